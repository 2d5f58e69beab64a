import re

import pytest

from marsseg.config import PRESETS, flatten, load_config, override, preset, save_config, validate
from marsseg.errors import ConfigError


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu", "kaggle"])
def test_presets_exist_and_round_trip(name, tmp_path):
    cfg = preset(name)
    assert cfg.preset == name
    save_config(cfg, tmp_path / "config.json", git_commit="abc")
    assert load_config(tmp_path / "config.json") == cfg


def test_override_coerces_types_and_leaves_original_untouched():
    base = preset("smoke")
    cfg = override(
        base,
        [
            "stage1.train.epochs=7",
            "post.tta=off",
            "augment.elastic=yes",
            "stage2.train.learning_rate=0.01",
            "submission.format=pixels",
        ],
    )
    assert cfg.stage1.train.epochs == 7 and cfg.post.tta == "off" and cfg.augment.elastic is True
    assert cfg.stage2.train.learning_rate == 0.01 and cfg.submission.format == "pixels"
    assert base.stage1.train.epochs == PRESETS["smoke"].stage1.train.epochs


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("stage1.train.epoch=3", "unknown setting 'stage1.train.epoch'"),
        ("stage1.train.epochs=many", "wants a int"),
        ("augment.elastic=maybe", "wants a bool"),
        ("stage1=3", "is a section"),
        ("noequals", "is not key=value"),
        ("seed.x=1", "is a value, not a section"),
    ],
)
def test_bad_overrides_say_what_is_wrong(assignment, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        override(preset("smoke"), [assignment])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        preset("fast")


def test_flatten_lists_dotted_keys():
    keys = flatten(preset("gpu"))
    assert "stage1.model.depth" in keys and "post.min_component" in keys


@pytest.mark.parametrize(
    "assignment, key",
    [
        ("stage1_share=0.01", "stage1_share"),
        ("stage1_share=0.99", "stage1_share"),
        ("stage1.loss.class_weight_power=-0.1", "stage1.loss.class_weight_power"),
        ("stage2.loss.class_weight_power=2.5", "stage2.loss.class_weight_power"),
        ("post.tta=maybe", "post.tta"),
        ("post.morphology=yes", "post.morphology"),
        ("post.class_bias=sometimes", "post.class_bias"),
        ("stage1.loss.max_weight_ratio=0.5", "stage1.loss.max_weight_ratio"),
        ("stage2.loss.max_weight_ratio=-3", "stage2.loss.max_weight_ratio"),
        ("submission.format=csv", "submission.format"),
        ("augment.strength=heavy", "augment.strength"),
        ("stage1.train.optimizer=sgd", "stage1.train.optimizer"),
        ("stage2.train.schedule=step", "stage2.train.schedule"),
        ("stage1.train.mixed_precision=maybe", "stage1.train.mixed_precision"),
        ("stage2.model.context=dense", "stage2.model.context"),
        ("augment.copy_paste_rate=1.5", "augment.copy_paste_rate"),
        ("stage1.model.depth=7", "stage1.model.depth"),
        ("stage2.model.depth=1", "stage2.model.depth"),
        ("stage2.model.base_filters=0", "stage2.model.base_filters"),
        ("stage1.model.dropout=1", "stage1.model.dropout"),
        ("stage2.model.input_stride=4", "stage2.model.input_stride"),
        ("stage1.model.context_rates=2,x", "stage1.model.context_rates"),
        ("stage1.model.residual=true", "stage1.model.residual"),
        ("stage1.loss.name=bce", "stage1.loss.name"),
        ("stage2.loss.name=focal+-1*dice", "stage2.loss.name"),
        ("stage2.loss.class_weights=inverse", "stage2.loss.class_weights"),
        ("stage2.loss.tversky_alpha=1.5", "stage2.loss.tversky_alpha"),
        ("stage1.loss.tversky_gamma=0", "stage1.loss.tversky_gamma"),
        ("stage2.train.epochs=0", "stage2.train.epochs"),
        ("stage1.train.batch_size=0", "stage1.train.batch_size"),
        ("stage2.train.learning_rate=0", "stage2.train.learning_rate"),
        ("stage1.train.patience=-1", "stage1.train.patience"),
        ("data.val_fraction=0.9", "data.val_fraction"),
        ("data.folds=0", "data.folds"),
        ("budget_seconds=-5", "budget_seconds"),
    ],
)
def test_validate_refuses_each_unusable_setting_by_name(assignment, key):
    named = re.escape(key)
    bad = override(preset("smoke"), [assignment])
    with pytest.raises(ConfigError, match=rf"^{named} .*--set {named}=") as caught:
        validate(bad)
    assert "\n" not in str(caught.value)
    example = re.search(r"--set (\S+=[^)]*)\)$", str(caught.value))[1]
    validate(override(bad, [example]))  # the refusal's example works


def test_a_weighted_sum_of_known_loss_terms_passes():
    validate(override(preset("smoke"), ["stage2.loss.name=focal_tversky+0.5*focal"]))


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu", "kaggle"])
def test_validate_passes_every_preset(name):
    assert validate(preset(name)) is preset(name)


@pytest.mark.parametrize("section", ["self_training", "stage2_focus"])
def test_opt_in_sections_are_off_in_every_preset(section):
    """Self-training is transductive; stage 2's focus is not yet measured: a user turns either on knowingly."""
    assert not any(getattr(cfg, section).enabled for cfg in PRESETS.values())


def test_a_bad_set_fails_before_any_data_is_loaded_and_without_tensorflow(tmp_path):
    """`marsseg train --set submission.format=csv` once trained all of stage 1 before failing."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from marsseg.cli.main import main\n"
        "code = main(['train', '--preset', 'smoke', '--data', sys.argv[1], '--out', sys.argv[2],"
        " '--set', 'submission.format=csv'])\n"
        "print('TF', 'tensorflow' in sys.modules, 'CODE', code)\n"
    )
    missing = tmp_path / "no-such-data.npz"  # a data error would name the file: validation must come first
    result = subprocess.run(
        [sys.executable, "-c", probe, str(missing), str(tmp_path / "run")], capture_output=True, text=True, timeout=60
    )
    assert "TF False CODE 2" in result.stdout, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "marsseg: error: submission.format is 'csv'; use one of rle, pixels (e.g. --set submission.format=rle)"
    ]
    assert not (tmp_path / "run").exists()


CYCLE = "stage1.model_cycle=attention=true context=none | attention=false context=aspp"


def test_model_cycle_variants_apply_typed_settings_on_top_of_the_stage_model():
    from dataclasses import replace

    from marsseg.config import StageConfig, model_variants

    stage = PRESETS["smoke"].stage1
    assert model_variants(stage) == [stage.model]
    assert model_variants(replace(stage, model_cycle="  ")) == [stage.model]
    cycle = "  depth=3   attention=no dropout=0.25 |  | context=aspp context_rates=1,2 "
    first, second, third = model_variants(replace(stage, model_cycle=cycle))
    assert first == replace(stage.model, depth=3, attention=False, dropout=0.25)
    assert type(first.depth) is int and type(first.dropout) is float and first.attention is False
    assert second == stage.model, "an empty variant is the stage's own model"
    assert third == replace(stage.model, context="aspp", context_rates="1,2")
    assert model_variants(StageConfig(model_cycle="|")) == [StageConfig().model] * 2


@pytest.mark.parametrize(
    "variant, message",
    [
        ("depth", "'depth' is not key=value"),
        ("=3", "'=3' is not key=value"),
        ("colour=red", "unknown model setting 'colour'; use depth, "),
        ("depth=deep", "setting 'depth' wants a int, got 'deep'"),
        ("attention=maybe", "setting 'attention' wants a bool"),
    ],
)
def test_a_variant_that_does_not_parse_is_one_line_naming_it(variant, message):
    from marsseg.config import model_variants

    cfg = override(preset("smoke"), [f"stage1.model_cycle=attention=false | {variant}"])
    for check in (lambda: validate(cfg), lambda: model_variants(cfg.stage1)):
        with pytest.raises(ConfigError) as caught:
            check()
        text = str(caught.value)
        assert "\n" not in text and text.startswith(f"stage1.model_cycle variant 1 ({variant!r}): ")
        assert message in text


def test_model_cycle_round_trips_through_set_and_config_json(tmp_path):
    from marsseg.config import model_variants

    cfg = validate(override(preset("smoke"), [CYCLE]))
    assert cfg.stage1.model_cycle == "attention=true context=none | attention=false context=aspp"
    gated, aspp = model_variants(cfg.stage1)
    assert (gated.attention, gated.context, aspp.attention, aspp.context) == (True, "none", False, "aspp")
    save_config(cfg, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == cfg
    assert preset("smoke").stage1.model_cycle == "" and preset("cpu").stage1.model_cycle == ""
    # The kernel's preset cycles the public write-ups' two networks over its 5 folds: gated, ASPP, gated, ...
    kaggle = [(v.attention, v.context) for v in model_variants(validate(preset("kaggle")).stage1)]
    assert kaggle == [(True, "none"), (False, "aspp")]


@pytest.mark.parametrize(
    "variant, message",
    [
        ("depth=9", "depth is 9; use 2..5 (e.g. depth=4 in that variant)"),
        ("context=dense", "context is 'dense'; use one of none, aspp (e.g. context=none in that variant)"),
        ("context_rates=0", "context_rates is '0'; use comma-separated dilation rates >= 1"),
        ("residual=true", "residual is true; a residual head refines stage-1 probabilities"),
        ("dropout=1.5", "dropout is 1.5; use 0 <= dropout < 1 (e.g. dropout=0.1 in that variant)"),
    ],
)
def test_validate_checks_every_variant_as_it_checks_the_stage_model(variant, message):
    named = re.escape(f"stage1.model_cycle variant 1 ({variant!r}): {message}")
    with pytest.raises(ConfigError, match=f"^{named}"):
        validate(override(preset("smoke"), [f"stage1.model_cycle=attention=false | {variant}"]))


def test_validate_refuses_a_stage_2_cycle():
    with pytest.raises(ConfigError, match=r"^stage2.model_cycle .*stage 2 is one network.*--set stage2.model_cycle="):
        validate(override(preset("smoke"), ["stage2.model_cycle=attention=false | context=aspp"]))
