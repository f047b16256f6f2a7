"""The debug header and preview links through the Django adapter (settings from test_django)."""

from __future__ import annotations

from pathlib import Path

from django.test import Client, override_settings
from test_django import config

from personalize_mw.core.preview import PARAM, PreviewCodec


def test_django_sends_the_debug_header_and_honours_a_preview(tmp_path: Path) -> None:
    debug_config = {**config(tmp_path), "debug": True}
    with override_settings(PERSONALIZE_CONFIG=debug_config):
        response = Client().get("/?plan=pro")
    assert response["X-Personalize-Debug"] == "hero: rules:hero.0+ => pro (hero.0, treatment)"
    token = PreviewCodec([config(tmp_path)["secret_keys"][0]]).make("hero", "known", None, 60)
    with override_settings(PERSONALIZE_CONFIG=config(tmp_path)):
        client = Client()
        assert "X-Personalize-Debug" not in client.get("/").headers
        previewed = client.get(f"/?{PARAM}={token}")
        assert "Welcome back" in previewed.content.decode()
        assert previewed.cookies["pmw_preview"].value == token and previewed.cookies["pmw_preview"]["httponly"]
        assert previewed["X-Personalize-Debug"] == "hero: preview => known (hero.1)"
