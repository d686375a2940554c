from jaxmodels.config import load_config
from jaxmodels.train import aot


def test_compile_report_without_running():
    config = load_config("experiments/mlp/digits.py:smoke")
    config.mesh.update(data=2, fsdp=2, tensor=2)
    report = aot.compile_report(config)
    assert report["argument_bytes"] > 0 and report["flops_per_step"] > 0
    assert report["peak_bytes_estimate"] >= report["temp_bytes"]
    assert "temp_bytes" in aot.format_report(report)
