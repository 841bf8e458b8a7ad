"""One file per ``binary_matmul`` backend (imported lazily by :mod:`..registry`)."""
