# The check stage of docker/check.sh: runs docker/check_inside.py inside a built bnn-lab image
# as a build step (where a host refuses `podman run`, a build step still runs), built with
# the network off so that the run proves it needs nothing from outside.
ARG IMAGE=localhost/bnn-lab:latest
FROM ${IMAGE}
RUN python /app/docker/check_inside.py
