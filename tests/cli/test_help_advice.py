"""What `--help` advises follows what the prevalence-shift yardstick measured (benchmarks/lodo_yardstick.py)."""

from __future__ import annotations

import pytest

from mitotype.cli.main import main


@pytest.mark.parametrize("command", ["predict", "challenge"])
def test_adapt_bn_help_says_it_is_not_advised_and_why(command, capsys):
    """AdaBN's statistics follow the input's share of atypical figures: at fewer atypical figures than the training
    data it calls more figures atypical. The help used to present it as the thing to do for one-lab inputs."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "not advised" in text.lower() and "share of atypical figures" in text
    assert "Prevalence shift" in text
