import pytest

from tests.requires import require


def test_a_missing_part_skips_here_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    require(None)
    with pytest.raises(pytest.skip.Exception, match="sshd is not installed"):
        require("sshd is not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true, but sshd is not installed \(CI must not pass"):
        require("sshd is not installed")
