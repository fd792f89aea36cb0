"""The Flower app template: `spikefed flower-app` writes it; `examples/flower-app` is it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import load_config
from spikefed.flower.template import CONFIG_FILE, template_files

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flower-app"


def test_example_app_is_the_template() -> None:
    for rel, text in template_files().items():
        assert (EXAMPLE / rel).read_text() == text, f"examples/flower-app/{rel} drifted"


def test_cli_writes_a_runnable_app_with_the_given_experiment(tmp_path) -> None:
    (tmp_path / "exp.yaml").write_text("name: site-study\ntrain: {rounds: 4}\n")
    dest = tmp_path / "app"
    res = CliRunner().invoke(app, ["flower-app", str(dest), "--config", str(tmp_path / "exp.yaml"),
                                   "--set", "data.num_clients=6"])
    assert res.exit_code == 0, res.output
    cfg = load_config(dest / CONFIG_FILE)
    assert (cfg.name, cfg.train.rounds, cfg.data.num_clients) == ("site-study", 4, 6)
    project = tomllib.loads((dest / "pyproject.toml").read_text())
    for ref in project["tool"]["flwr"]["app"]["components"].values():
        module, attr = ref.split(":")
        source = (dest / (module.replace(".", "/") + ".py")).read_text()
        assert f"\n{attr} = " in source
    again = CliRunner().invoke(app, ["flower-app", str(dest)])
    assert again.exit_code == 2 and "--force" in again.output
    assert CliRunner().invoke(app, ["flower-app", str(dest), "--force"]).exit_code == 0
    assert load_config(dest / CONFIG_FILE).name == "flower-app"  # default experiment


def test_core_cli_and_template_work_without_flower() -> None:
    import subprocess

    code = ("import sys; sys.modules['flwr'] = None\n"  # as if Flower were not installed
            "import spikefed.cli, spikefed.sim, spikefed.experiment, spikefed.flower.template\n"
            "import spikefed.flower as f\n"
            "try:\n    f.make_server_app\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'spikefed[flower]'" in out.stdout
