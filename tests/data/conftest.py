import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep decoded-array caches out of the user's home during tests."""
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("SLIMKIT_DATA", raising=False)
