import json

import pytest

from bnn_lab.bench.cli import main


def test_gemm_json(capsys):
    assert main(["gemm", "--m", "3", "--n", "5", "--k", "70", "--json", "--warmup", "1", "--repeats", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("binary_ms", "float_ms", "speedup"):
        assert isinstance(res[key], float) and res[key] > 0
    assert res["speedup"] == pytest.approx(res["float_ms"] / res["binary_ms"])
    assert (res["m"], res["n"], res["k"], res["device"]) == (3, 5, 70, "cpu")
    assert res["exact"] is True


def test_conv_json_torch_backend(capsys):
    argv = ["conv", "--n", "1", "--c", "8", "--o", "4", "--h", "5", "--w", "5", "--backend", "torch", "--json"]
    assert main([*argv, "--warmup", "0", "--repeats", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"binary_ms", "float_ms", "speedup"} <= set(res)
    assert res["backend"] == "torch" and res["padding"] == 1 and res["exact"] is True


def test_table_output(capsys):
    assert main(["gemm", "--m", "2", "--n", "2", "--k", "33", "--warmup", "0", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "binary_matmul" in out and "ms" in out


def test_bad_backend_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gemm", "--backend", "nope"])
    assert exc.value.code == 2
    assert "nope" in capsys.readouterr().err
