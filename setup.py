"""Packaging details pyproject.toml cannot express: conf/ (the Hydra config groups) stays at
the top level of the repository and is installed as the package data ``bnn_lab/conf``
(``bnn_lab.cli.train.find_conf_dir`` looks there first, then at the checkout's conf/)."""

from setuptools import find_namespace_packages, setup

CONF = ["bnn_lab.conf"] + [f"bnn_lab.conf.{group}" for group in find_namespace_packages(where="conf")]

setup(
    packages=find_namespace_packages(include=["bnn_lab", "bnn_lab.*"], exclude=["*.__pycache__"]) + CONF,
    package_dir={"bnn_lab.conf": "conf"},
    package_data={group: ["*.yaml"] for group in CONF},
)
