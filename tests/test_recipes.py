"The seed report's recipe presets and --curriculum: option checks through the console entry point (no model is loaded)."
import pytest
from abovqa.cli import main
from abovqa.finetune import PRESETS, RECIPES, recipe_quant, training_kwargs


def test_seed_presets_match_the_report():
    assert {"seed-blip", "seed-llava", "seed-qwen"} <= set(PRESETS) and set(RECIPES) == {"seed-blip", "seed-llava", "seed-qwen"}
    b = training_kwargs("seed-blip")
    assert (b["per_device_train_batch_size"], b["gradient_accumulation_steps"], b["num_train_epochs"], b["learning_rate"],
            b["eval_steps"], b["weight_decay"]) == (8, 2, 3, 2e-4, 1000, 0.01)
    assert RECIPES["seed-blip"]["lr_after_epochs"] == {1: 2e-5} and RECIPES["seed-blip"]["curriculum"] == (6000, 20000)
    assert recipe_quant("blip", "seed-blip", "default") == "8bit" and recipe_quant("blip", "blip", "default") is None
    assert [RECIPES[f"seed-{m}"]["normalizer"] for m in ("blip", "llava", "qwen")] == ["blip", "llava", "qwen"]
    assert training_kwargs("seed-qwen")["max_steps"] == 5000 and training_kwargs("seed-llava")["max_steps"] == 1500

def test_recipe_of_another_family_is_a_usage_error(tmp_path, capsys):
    args = ["finetune", "--family", "llava", "--model-path", "x", "--data", str(tmp_path), "--images", str(tmp_path),
            "-o", str(tmp_path/"run"), "--preset", "seed-blip"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--preset seed-blip is the blip recipe" in err and "Traceback" not in err

@pytest.mark.parametrize("bad", ["20000,6000", "6k,20k", "0,10"])
def test_curriculum_sizes_are_checked(bad, tmp_path, capsys):
    rc = main(["finetune", "--family", "blip", "--model-path", "x", "--data", "d", "--images", "i", "-o", str(tmp_path),
               "--curriculum", bad])   # argparse's usage error comes back as exit 2 through the CLI's error boundary
    assert rc == 2 and "--curriculum" in capsys.readouterr().err
