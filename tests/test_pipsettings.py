from __future__ import annotations

from pathlib import Path

from nbcontainers.pipsettings import read_pip_settings


def test_reads_config_file_then_env(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://user:tok@pypi.example/simple\n"
        "cert = /etc/ssl/certs/ca-certificates.crt\n[install]\nfind-links = /opt/w\n"
    )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = {
        "PIP_CONFIG_FILE": str(conf),
        "PIP_FIND_LINKS": str(wheels),
        "HOME": str(tmp_path),
        "XDG_CONFIG_DIRS": str(tmp_path / "none"),
        "XDG_CONFIG_HOME": str(tmp_path / "none"),
    }
    s = read_pip_settings(env)
    assert s.index_url == "https://user:tok@pypi.example/simple"
    assert s.find_links == (str(wheels),)  # the variable wins over the file
    assert str(wheels) in s.local_paths()


def test_render_for_builds_drops_local_entries(tmp_path: Path) -> None:
    env = {
        "PIP_EXTRA_INDEX_URL": f"file://{tmp_path} https://mirror.example/simple",
        "PIP_FIND_LINKS": str(tmp_path),
        "HOME": str(tmp_path),
        "XDG_CONFIG_DIRS": str(tmp_path / "x"),
        "XDG_CONFIG_HOME": str(tmp_path / "x"),
    }
    text = read_pip_settings(env).render(
        cert="/run/secrets/pipcert", find_links=("/tmp/nbc-wheels",), remote_only=True
    )
    assert str(tmp_path) not in text
    assert "https://mirror.example/simple" in text
    assert "find-links = /tmp/nbc-wheels" in text and "cert = /run/secrets/pipcert" in text
