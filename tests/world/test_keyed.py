"""lion_core/world/keyed.py: the keyed family, a plugin whose answers no rule of the word gives."""

from __future__ import annotations

from lion_core.world import families as fam


def test_the_keyed_family_is_a_plugin_whose_answers_no_rule_of_the_word_gives() -> None:
    from lion_core.world import keyed

    fam.register_family(keyed.KEYED)  # (imported once per process: register again after a test popped it)
    try:
        assert fam.identify("Encode abcd")[0].name == "code"
        assert fam.solve("Cipher ABC") == keyed.encode("abc") and fam.level_of("Encode abcdefg") == 3
    finally:
        fam._REGISTRY.pop("code", None)
    answers = {keyed.encode(w) for w in ("abc", "abd", "abe", "bbc")}
    assert len(answers) == 4 and all(len(a) == keyed.CODE_LENGTH for a in answers)
