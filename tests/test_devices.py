"""``--device``: one resolver, clear errors, and the same numbers wherever the CPU runs them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sigprop.runtime.devices import resolve_device


def test_auto_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "", "cuda:x"])
def test_unknown_devices_are_rejected_by_name(name):
    with pytest.raises(ValueError, match="device"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_so():
    with pytest.raises(ValueError, match="no CUDA"):
        resolve_device("cuda")


def test_measurements_take_the_device():
    """The CPU path through ``device`` gives exactly the default numbers."""
    from sigprop import diagnose, simulate

    default = simulate(depth=4, width=32, seeds=1, n_probes=1, n_tokens=4)
    on_cpu = simulate(depth=4, width=32, seeds=1, n_probes=1, n_tokens=4, device="cpu")
    assert default.table.equals(on_cpu.table)
    auto = diagnose(hf="gpt2", layers=2, width=32, heads=2, seeds=1, n_probes=1, device="auto")
    cpu = diagnose(hf="gpt2", layers=2, width=32, heads=2, seeds=1, n_probes=1, device="cpu")
    assert auto.log_jac_L.mean == cpu.log_jac_L.mean


@pytest.mark.parametrize("command", [["simulate", "--depth", "4"],
                                     ["diagnose", "--hf", "gpt2", "--layers", "2"]])
def test_bad_device_exits_2(command):
    result = subprocess.run([sys.executable, "-m", "sigprop", *command, "--device", "tpu"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "device must be one of" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
