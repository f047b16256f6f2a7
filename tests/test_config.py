"""Config loading: errors name file, line and key; interpolation; aliases; every start-up check."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Callable, Union

import pytest

from personalize_mw.cli import main as cli_main
from personalize_mw.config import Config, load_config
from personalize_mw.errors import ConfigError

KEY = "0123456789abcdef-secret"


def write(tmp_path: Path, text: str, name: str = "personalize.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(config: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(config)
    return info.value


# ---------------------------------------------------------------- file, line and key


def test_unknown_nested_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys:
          - {KEY}
        cookie:
          name: pmw_id
          max_age_dayz: 30
        """)
    message = str(load_error(path))
    assert f"{path}:5" in message
    assert "cookie.max_age_dayz" in message


def test_bad_value_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        consent:
          mode: opt-in
          sources: [own, klaro]

        cookie:
          max_age_days: 999
        """)
    error = load_error(path)
    assert f"{path}:7: cookie.max_age_days:" in str(error)
    assert error.lines == [7]
    assert error.problems[0][0] == ("cookie", "max_age_days")


def test_condition_error_names_line_and_full_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        segments:
          returning:
            visits: {{gte: 2}}
        slots:
          hero:
            rules:
              - if: returning
                variant: back
                template: "<h1>Welcome back</h1>"
              - if:
                  pathh: /pricing
                variant: pricing
                template: "<h1>Pricing</h1>"
        """)
    message = str(load_error(path))
    assert f"{path}:12: slots.hero.rules.1.if.pathh: unknown field 'pathh'" in message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
        secret_keys: [short]
        cookie:
          max_paths: 0
        colour: blue
        """)
    error = load_error(path)
    keys = {".".join(map(str, p)) for p, _ in error.problems}
    assert {"secret_keys", "cookie.max_paths", "colour"} <= keys
    assert len(str(error).splitlines()) == len(error.problems) >= 3


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        slots:
          hero:
            rules: [unclosed
        enabled: true
        """)
    error = load_error(path)
    assert "invalid YAML" in str(error)
    assert error.lines[0] is not None and error.lines[0] >= 4
    assert f"{path}:{error.lines[0]}" in str(error)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "mapping" in str(load_error(write(tmp_path, "- a\n- b\n")))


def test_empty_file_lacks_secret_keys(tmp_path: Path) -> None:
    message = str(load_error(write(tmp_path, "# nothing yet\n")))
    assert "secret_keys" in message


def test_missing_file(tmp_path: Path) -> None:
    message = str(load_error(tmp_path / "nope.yaml"))
    assert "nope.yaml" in message and "cannot read" in message


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        enabled: !!python/object/apply:os.system ["echo pwned > {tmp_path}/pwned"]
        """)
    assert "invalid YAML" in str(load_error(path))
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- aliases


def test_aliases_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        segments:
          paid: &paid
            utm_medium: cpc
          also_paid: *paid
        """)
    error = load_error(path)
    assert "aliases" in str(error)
    assert f"{path}:5" in str(error)


def test_alias_bomb_is_rejected_quickly(tmp_path: Path) -> None:
    lines = [f"secret_keys: [{KEY}]", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 10)]
    assert "aliases" in str(load_error(write(tmp_path, "\n".join(lines) + "\n")))


def test_anchor_without_alias_is_harmless(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        segments:
          paid: &paid
            utm_medium: cpc
        """)
    assert "paid" in load_config(path).segments


# ---------------------------------------------------------------- environment


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMW_TEST_KEY", "from-the-environment-0123")
    monkeypatch.delenv("PMW_TEST_UNSET", raising=False)
    path = write(tmp_path, """
        secret_keys:
          - ${PMW_TEST_UNSET:-default-key-0123456789}
          - ${PMW_TEST_KEY}
        sink: "jsonl:${PMW_TEST_UNSET:-data}/touchpoints.jsonl"
        country_header: x-${PMW_TEST_UNSET:-}country
        """)
    config = load_config(path)
    assert config.secret_keys == ["default-key-0123456789", "from-the-environment-0123"]
    assert config.sink == "jsonl:data/touchpoints.jsonl"
    assert config.country_header == "x-country"


def test_env_set_but_empty_wins_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMW_TEST_EMPTY", "")
    path = write(tmp_path, f"secret_keys: [{KEY}]\ncountry_header: x${{PMW_TEST_EMPTY:--y}}\n")
    assert load_config(path).country_header == "x"


def test_missing_env_var_names_it_with_file_line_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PMW_TEST_MISSING", raising=False)
    path = write(tmp_path, f"""
        secret_keys:
          - {KEY}
          - ${{PMW_TEST_MISSING}}
        """)
    message = str(load_error(path))
    assert f"{path}:3: secret_keys.1: environment variable PMW_TEST_MISSING is not set" in message


def test_missing_env_var_in_a_dict_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PMW_TEST_MISSING", raising=False)
    message = str(load_error({"secret_keys": ["${PMW_TEST_MISSING}"]}))
    assert "<config>: secret_keys.0: environment variable PMW_TEST_MISSING is not set" in message


def test_keys_are_not_interpolated(monkeypatch: pytest.MonkeyPatch, make_core_config: Callable[..., dict]) -> None:
    monkeypatch.setenv("PMW_TEST_NAME", "hero")
    error = load_error(make_core_config(slots={"${PMW_TEST_NAME}": {"rules": []}}))
    assert "must match" in str(error)


# ---------------------------------------------------------------- schema checks


def test_unknown_top_level_key(make_core_config: Callable[..., dict]) -> None:
    error = load_error(make_core_config(sinks="jsonl:x"))
    assert error.problems[0][0] == ("sinks",)
    assert "sinks" in str(error) and "Extra inputs are not permitted" in str(error)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"cookie": {"nam": "x"}}, "cookie.nam"),
        ({"consent": {"modes": "opt-in"}}, "consent.modes"),
        ({"delivery": {"sizes": 10}}, "delivery.sizes"),
        ({"goals": {"signup": {"path": "/thanks", "valu": 3}}}, "goals.signup.valu"),
        ({"slots": {"hero": {"rules": [{"if": {"path": "/"}, "variant": "a", "template": "x", "when": 1}]}}},
         "slots.hero.rules.0.when"),
    ],
)
def test_unknown_nested_keys(make_core_config: Callable[..., dict], overrides: dict, key: str) -> None:
    assert key in str(load_error(make_core_config(**overrides)))


def test_short_secret_rejected(make_core_config: Callable[..., dict]) -> None:
    message = str(load_error(make_core_config(secret_keys=[KEY, "too-short"])))
    assert "secret_keys" in message and "16 characters" in message
    assert "secret_keys" in str(load_error(make_core_config(secret_keys=[])))


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"sink": "kafka:topic"}, "unknown sink"),
        ({"sink": "jsonl:"}, "unknown sink"),
        ({"sink": []}, "at least one sink"),
        ({"sink": ["jsonl:a.jsonl", "jsonl:a.jsonl"]}, "listed twice"),
        ({"slots": {"Hero": {"rules": []}}}, "must match"),
        ({"goals": {"signup": {"value": 1}}}, "exactly one of 'path' or 'path_prefix'"),
        ({"goals": {"signup": {"path": "/a", "path_prefix": "/b"}}}, "exactly one of 'path' or 'path_prefix'"),
        ({"slots": {"hero": {"rules": [{"if": {"path": "/"}, "variant": "a"}]}}}, "exactly one of 'template'"),
        ({"slots": {"hero": {"rules": [{"variant": "a", "template": "x"}]}}}, "slots.hero.rules.0.if"),
        ({"slots": {"hero": {"rules": [{"if": {"path": "/"}, "variant": "a b", "template": "x"}]}}}, "variant"),
        ({"consent": {"mode": "opt-maybe"}}, "consent.mode"),
        ({"consent": {"endpoint": "no-slash"}}, "consent.endpoint"),
        ({"cookie": {"max_age_days": 401}}, "cookie.max_age_days"),
        ({"cookie": {"name": "bad name;"}}, "cookie.name"),
        ({"render": {"max_output_bytes": 10}}, "render.max_output_bytes"),
        ({"delivery": {"queue_size": 5}}, "delivery.queue_size"),
        ({"queue": {"size": 100}}, "'queue:' is now 'delivery:'"),
    ],
)
def test_schema_errors(make_core_config: Callable[..., dict], overrides: dict, fragment: str) -> None:
    assert fragment in str(load_error(make_core_config(**overrides)))


# ---------------------------------------------------------------- compiled at start-up


def test_template_file_missing_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        slots:
          hero:
            rules:
              - if: {{path: /}}
                variant: home
                template_file: variants/missing.html
        """)
    message = str(load_error(path))
    assert f"{path}:7: slots.hero.rules.0.template_file: cannot read" in message
    assert "missing.html" in message


def test_template_file_is_resolved_next_to_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "home.html").write_text("<h1>{{ request.path }}</h1>", encoding="utf-8")
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        sink: jsonl:data/tp.jsonl
        slots:
          hero:
            rules:
              - if: {{path: /}}
                variant: home
                template_file: variants/home.html
        """)
    config = load_config(path)
    assert config.base_dir == str(tmp_path.resolve())
    assert config.resolve("data/tp.jsonl") == tmp_path.resolve() / "data" / "tp.jsonl"
    assert config.resolve("/abs/tp.jsonl") == Path("/abs/tp.jsonl")


@pytest.mark.parametrize("pattern", ["(unclosed", "[z-a]", "*oops"])
def test_bad_regex_names_the_key(tmp_path: Path, pattern: str) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        segments:
          campaign:
            utm_campaign:
              matches: "{pattern}"
        """)
    message = str(load_error(path))
    assert f"{path}:5: segments.campaign.utm_campaign.matches: invalid regular expression" in message


def test_bad_regex_inline_in_a_rule(make_core_config: Callable[..., dict]) -> None:
    rules = [{"if": {"any": [{"path": "/"}, {"path": {"matches": "(("}}]}, "variant": "a", "template": "x"}]
    message = str(load_error(make_core_config(slots={"hero": {"rules": rules}})))
    assert "slots.hero.rules.0.if.any.1.path.matches: invalid regular expression" in message


def test_template_syntax_error_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        slots:
          hero:
            rules:
              - if: {{path: /}}
                variant: home
                template: "<h1>{{{{ request.path </h1>"
        """)
    message = str(load_error(path))
    assert f"{path}:7: slots.hero.rules.0.template: template error" in message


def test_static_template_with_javascript_url_fails_at_start_up(make_core_config: Callable[..., dict]) -> None:
    rules = [{"if": {"path": "/"}, "variant": "a", "template": '<a href="javascript:alert(1)">x</a>'}]
    message = str(load_error(make_core_config(slots={"hero": {"rules": rules}})))
    assert "slots.hero.rules.0.template" in message and "javascript" in message


def test_unknown_segment_in_rule(make_core_config: Callable[..., dict]) -> None:
    rules = [{"if": "vip", "variant": "a", "template": "x"}]
    message = str(load_error(make_core_config(segments={"paid": {"utm_medium": "cpc"}}, slots={"hero": {"rules": rules}})))
    assert "slots.hero.rules.0.if: unknown segment 'vip' (known: paid)" in message


# ---------------------------------------------------------------- forms of config=


def test_dict_and_config_object(make_core_config: Callable[..., dict]) -> None:
    config = load_config(make_core_config(slots={"hero": {"rules": [
        {"if": {"path": "/"}, "variant": "a", "template": "A", "id": "hero-home"}]}}))
    assert isinstance(config, Config)
    assert load_config(config) is config
    assert config.slots["hero"].rules[0].if_ == {"path": "/"}
    assert config.consent.mode == "opt-in"  # the EU default


def test_other_types_are_refused() -> None:
    with pytest.raises(TypeError):
        load_config(42)  # type: ignore[arg-type]


def test_dict_is_not_mutated(monkeypatch: pytest.MonkeyPatch, make_core_config: Callable[..., dict]) -> None:
    monkeypatch.setenv("PMW_TEST_KEY", "from-the-environment-0123")
    data = make_core_config(secret_keys=["${PMW_TEST_KEY}"])
    assert load_config(data).secret_keys == ["from-the-environment-0123"]
    assert data["secret_keys"] == ["${PMW_TEST_KEY}"]


# ---------------------------------------------------------------- personalize-mw check


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, f"secret_keys: [{KEY}]\n", "good.yaml")
    assert cli_main(["check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out

    bad = write(tmp_path, f"secret_keys: [{KEY}]\ncookie:\n  max_age_dayz: 3\n", "bad.yaml")
    assert cli_main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3: cookie.max_age_dayz" in err


@pytest.mark.parametrize("depth", [100, 3000])
def test_a_condition_nested_thousands_deep_is_an_error_with_file_line_and_key(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "personalize.yaml"
    nested = "{not: " * depth + "{visits: {gte: 1}}" + "}" * depth
    path.write_text(f"secret_keys: [{'x' * 32}]\nsegments:\n  deep: {nested}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "nested more than 64 levels" in message and f"{path}" in message
    if depth == 100:  # deep enough to refuse, shallow enough for YAML to read: the key and line are named
        assert "segments.deep.not.not" in message and f"{path}:3" in message
    with pytest.raises(ConfigError, match="segments.deep.not"):  # a dict from code, the same
        load_config({"secret_keys": ["x" * 32], "segments": {"deep": _nested_dict(depth)}})


def _nested_dict(depth: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"visits": {"gte": 1}}
    for _ in range(depth):
        condition = {"not": condition}
    return condition


def test_the_environment_never_reaches_a_template(monkeypatch: pytest.MonkeyPatch,
                                                  make_core_config: Callable[..., dict]) -> None:
    monkeypatch.setenv("PMW_TEST_SECRET", "s3cr3t")
    config = load_config(make_core_config(slots={"hero": {"rules": [
        {"if": {"path_prefix": "/"}, "variant": "v", "template": "<p>${PMW_TEST_SECRET}</p>"}]}},
        segments={"s": {"utm_source": "${PMW_TEST_SECRET}"}}))
    assert config.slots["hero"].rules[0].template == "<p>${PMW_TEST_SECRET}</p>"  # text, as written
    assert config.segments["s"] == {"utm_source": "${PMW_TEST_SECRET}"}


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_template_files_stay_inside_the_config_folder(tmp_path: Path, where: str) -> None:
    site, outside = tmp_path / "site", tmp_path / "secret.txt"
    site.mkdir()
    outside.write_text("the server's secret")
    (site / "ok.html").write_text("<p>fine</p>")
    name = {"absolute": str(outside), "dotdot": "../secret.txt", "symlink": "link.html"}[where]
    if where == "symlink":
        (site / "link.html").symlink_to(outside)
    path = site / "personalize.yaml"
    rule = '{"if": {"path_prefix": "/"}, "variant": "v", "template_file": "%s"}'
    path.write_text(f"secret_keys: [{KEY}]\nslots:\n  hero:\n    rules:\n      - {rule % name}\n")
    message = str(load_error(path))
    assert "outside the config's folder" in message and "slots.hero.rules.0.template_file" in message
    path.write_text(f"secret_keys: [{KEY}]\nslots:\n  hero:\n    rules:\n      - {rule % 'ok.html'}\n")
    assert load_config(path).slots["hero"].rules[0].template_file == "ok.html"


# ---------------------------------------------------------------- one report per mistake


def test_a_union_and_a_journey_report_each_typo_once_and_the_stages_still_resolve(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        journey:
          stages:
            - name: awareness
            - name: decision
              iff: {{viewed: /pricing}}
        slots:
          next:
            strategy: journey
            stages:
              awareness: {{variant: a, templat: "A"}}
              decision:
                - {{variant: b, template: "B", goall: signup}}
          other:
            strategy: 3
            rules:
              - if: nobody
                variant: x
                template: x
        """)
    error = load_error(path)
    assert str(error).splitlines() == [
        f"{path}:6: journey.stages.1.iff: Extra inputs are not permitted: did you mean 'if'?",
        f"{path}:11: slots.next.stages.awareness.templat: Extra inputs are not permitted: did you mean 'template'?",
        f"{path}:13: slots.next.stages.decision.0.goall: Extra inputs are not permitted: did you mean 'goal'?",
        f"{path}:15: slots.other.strategy: Input should be a valid string or a valid list",
    ]  # no "unknown stage 'decision'", and the slot whose strategy is wrong is not checked further


def test_union_members_are_understood_in_both_spellings() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    from personalize_mw.config_problems import pydantic_problems

    class Item(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str

    class Old(BaseModel):
        items: dict[str, "Union[Item, list[Item]]"]

    class New(BaseModel):
        items: dict[str, Item | list[Item]]

    for schema in (Old, New):
        with pytest.raises(ValidationError) as info:
            schema.model_validate({"items": {"one": {"nam": "x"}, "many": [{"name": "y", "size": 1}]}})
        assert sorted(pydantic_problems(schema, info.value)) == [
            (("items", "many", 0, "size"), "Extra inputs are not permitted"),
            (("items", "one", "nam"), "Extra inputs are not permitted: did you mean 'name'?"),
        ], schema


def test_an_unset_variable_is_reported_with_the_other_problems_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PMW_TEST_MISSING", raising=False)
    path = write(tmp_path, """
        secret_keys: ["${PMW_TEST_MISSING}"]
        cookie:
          nam: x
        """)
    assert str(load_error(path)).splitlines() == [
        f"{path}:1: secret_keys.0: environment variable PMW_TEST_MISSING is not set",  # not also "too short"
        f"{path}:3: cookie.nam: Extra inputs are not permitted: did you mean 'name'?",
    ]


def test_guardrails_name_goals(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        secret_keys: [{KEY}]
        goals:
          signup: {{path: /thanks}}
          whitepaper: {{path: /whitepaper}}
        guardrails: [whitepaper, signup, whitepaper]
        """)
    assert load_config(path).guardrails == ["whitepaper", "signup"]
    wrong = write(tmp_path, f"""
        secret_keys: [{KEY}]
        goals:
          signup: {{path: /thanks}}
        guardrails:
          - signup
          - sigup
        """, name="wrong.yaml")
    error = load_error(wrong)
    assert f"{wrong}:4: guardrails:" in str(error) and "'sigup' not among goals: (signup)" in str(error)
