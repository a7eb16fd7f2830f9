import json
import os

import numpy as np

from experiments import svgd_benchmark
from experiments.configs import svgd_benchmark as benchmark_config


def test_tiny_benchmark_writes_results(tmp_path):
    config = benchmark_config.get_config("tiny")
    results = svgd_benchmark.run_benchmark(config, str(tmp_path))
    for name in ("results.json", "results.md", "step_time.png"):
        assert os.path.getsize(tmp_path / name) > 0
    rows = results["rows"]
    assert {row["implementation"] for row in rows} == {"f2p", "numpy", "numpy_f64", "blackjax"}
    assert all(row["agrees"] for row in rows)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["environment"]["versions"]["jax"] == "0.10.1"
    assert saved["matmul_peak_flops"] > 0
    assert "xla_flags" in saved["environment"]  # recorded with every result
    assert saved["batch"]["problems"] == 4 and saved["batch"]["vmap_step_ms"] > 0


def test_tiny_demo_shows_collapse(tmp_path):
    config = benchmark_config.get_config("tiny")
    config.demo.num_steps = 300
    results = svgd_benchmark.run_demo(config, str(tmp_path))
    by_name = {row["generator"]: row for row in results["rows"]}
    assert by_name["svgd"]["within_mode_std"] > 0.4
    assert by_name["gradient"]["within_mode_std"] < 0.1
    assert os.path.getsize(tmp_path / "demo.png") > 0


def test_numpy_reference_keeps_the_particle_dtype():
    # A float64 bandwidth once promoted the N x N work (and the particles) to float64.
    rng = np.random.default_rng(0)
    means = svgd_benchmark.mixture_means(6, 3.0)
    for dtype in (np.float32, np.float64):
        x = rng.normal(size=(40, 6)).astype(dtype)
        moved = svgd_benchmark.numpy_svgd_step(x, means.astype(dtype), 0.05, np.triu_indices(40, 1))
        assert moved.dtype == dtype
