"""Distillation losses and the training helpers: soft targets, hidden alignment, masking, optimizer groups, recipes."""

import argparse
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from modeling_inhibidistilbert.distill.checkpointing import TrainerState
from modeling_inhibidistilbert.distill.losses import (
    DistillationLoss,
    hidden_state_loss,
    mask_tokens,
    masked_soft_target_loss,
    parse_layer_map,
    soft_target_loss,
)
from modeling_inhibidistilbert.distill.training import (
    OutputDirError,
    parameter_groups,
    parse_args_with_recipe,
    prepare_output_dir,
    str2bool,
)


def test_soft_target_loss_is_temperature_scaled_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    temperature = 3.0
    p_teacher = F.softmax(teacher / temperature, -1)
    expected = (p_teacher * (p_teacher.log() - F.log_softmax(student / temperature, -1))).sum(-1).mean()
    assert float(soft_target_loss(student, teacher, temperature)) == pytest.approx(
        float(expected) * temperature**2, rel=1e-5
    )
    assert float(soft_target_loss(teacher, teacher, temperature)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_loss_combines_weighted_terms_and_finetunes_on_labels_alone():
    torch.manual_seed(0)
    student = SimpleNamespace(logits=torch.randn(5, 2, requires_grad=True), hidden_states=None)
    teacher = SimpleNamespace(logits=torch.randn(5, 2), hidden_states=None)
    labels = torch.tensor([0, 1, 1, 0, 1])
    loss_fn = DistillationLoss(is_regression=False, alpha_kd=0.7, alpha_ce=0.3, temperature=2.0)
    total, parts = loss_fn(student, labels, teacher)
    assert set(parts) == {"loss_kd", "loss_ce"}
    assert total.item() == pytest.approx(0.7 * parts["loss_kd"].item() + 0.3 * parts["loss_ce"].item())
    total.backward()
    assert student.logits.grad is not None
    finetune, parts = loss_fn(student, labels, None)
    assert set(parts) == {"loss_ce"}
    assert finetune.item() == pytest.approx(F.cross_entropy(student.logits, labels).item())


def test_regression_distillation_uses_mse_on_the_teacher_score():
    student = SimpleNamespace(logits=torch.tensor([[1.0], [2.0]]), hidden_states=None)
    teacher = SimpleNamespace(logits=torch.tensor([[1.5], [2.0]]), hidden_states=None)
    loss_fn = DistillationLoss(is_regression=True, alpha_kd=1.0, alpha_ce=1.0)
    _, parts = loss_fn(student, torch.tensor([1.0, 3.0]), teacher)
    assert float(parts["loss_kd"]) == pytest.approx(0.125) and float(parts["loss_ce"]) == pytest.approx(0.5)


def test_hidden_state_loss_ignores_padding_and_maps_layers():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    student = tuple(torch.randn(2, 4, 8) for _ in range(3))
    teacher = tuple(torch.randn(2, 4, 8) for _ in range(5))
    layer_map = parse_layer_map(None, 2, 4)
    assert layer_map == [(1, 2), (2, 4)]
    for kind in ("cosine", "mse", "cosine+mse"):
        loss = hidden_state_loss(student, teacher, mask, layer_map, kind)
        changed = tuple(h.clone() for h in student)
        for h in changed:
            h[~mask.bool()] = 1e3  # padded positions must not count
        assert float(hidden_state_loss(changed, teacher, mask, layer_map, kind)) == pytest.approx(float(loss))
    same = hidden_state_loss(teacher, teacher, mask, [(1, 1), (4, 4)], "cosine+mse")
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_layer_map_parsing():
    assert parse_layer_map(None, 3, 3) == [(1, 1), (2, 2), (3, 3)]
    assert parse_layer_map("last", 3, 6) == [(3, 6)]
    assert parse_layer_map("0:0, 1:2,3:6", 3, 6) == [(0, 0), (1, 2), (3, 6)]
    assert parse_layer_map([[1, 2]], 3, 6) == [(1, 2)]
    with pytest.raises(ValueError, match="out of range"):
        parse_layer_map("4:6", 3, 6)
    with pytest.raises(ValueError, match="student:teacher"):
        parse_layer_map("1-2", 3, 6)


def test_mask_tokens_is_reproducible_and_spares_special_tokens():
    ids = torch.randint(5, 100, (8, 32))
    special = torch.zeros_like(ids)
    special[:, 0] = special[:, -1] = 1
    first = mask_tokens(ids, special, 4, 100, 0.15, torch.Generator().manual_seed(3))
    second = mask_tokens(ids, special, 4, 100, 0.15, torch.Generator().manual_seed(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    masked, labels = first
    assert (labels[:, 0] == -100).all() and (labels[:, -1] == -100).all()
    chosen = labels != -100
    assert 0.05 < chosen.float().mean() < 0.3
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    assert (masked[chosen] == 4).float().mean() > 0.5  # most chosen tokens become [MASK]
    logits = torch.randn(8, 32, 100)
    assert float(masked_soft_target_loss(logits, logits, labels, 2.0)) == pytest.approx(0.0, abs=1e-5)


def test_optimizer_groups_exempt_biases_layernorm_and_give_scalars_their_own_rate(tiny_config):
    from modeling_inhibidistilbert import InhibiDistilBertForSequenceClassification

    model = InhibiDistilBertForSequenceClassification(tiny_config)
    groups = {g["name"]: g for g in parameter_groups(model, 1e-3, 0.01, scalar_learning_rate=5e-2)}
    names = {id(p): n for n, p in model.named_parameters()}
    decay = [names[id(p)] for p in groups["decay"]["params"]]
    no_decay = [names[id(p)] for p in groups["no_decay"]["params"]]
    scalars = [names[id(p)] for p in groups["inhibitor_scalars"]["params"]]
    assert groups["decay"]["weight_decay"] == 0.01 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(not n.endswith("bias") and "layer_norm" not in n and "LayerNorm" not in n for n in decay)
    assert any("LayerNorm.weight" in n for n in no_decay) and any("sa_layer_norm.weight" in n for n in no_decay)
    assert len(scalars) == 3 * tiny_config.n_layers and groups["inhibitor_scalars"]["lr"] == 5e-2
    assert groups["inhibitor_scalars"]["weight_decay"] == 0.0
    assert len(decay) + len(no_decay) + len(scalars) == len(list(model.parameters()))


def test_best_model_choice_handles_nan_and_direction():
    state = TrainerState()
    assert state.is_better(float("nan"))  # the first evaluation always counts
    state.best_metric = float("nan")
    assert state.is_better(0.1)
    state.best_metric = 0.5
    assert not state.is_better(float("nan")) and not state.is_better(0.5) and state.is_better(0.6)
    assert state.is_better(0.4, greater_is_better=False)


def _parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--learning_rate", type=float, default=1.0)
    parser.add_argument("--num_train_epochs", type=float, default=3)
    parser.add_argument("--center_scores", type=str2bool)
    parser.add_argument("--pad_to_max_length", action="store_true")
    return parser


def test_recipe_values_are_defaults_and_the_command_line_wins(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 3.0e-5\nnum_train_epochs: 5\ncenter_scores: false\npad_to_max_length: true\n")
    args = parse_args_with_recipe(_parser(), ["--config", str(recipe), "--num_train_epochs", "2"])
    assert args.learning_rate == 3e-5 and args.num_train_epochs == 2.0
    assert args.center_scores is False and args.pad_to_max_length is True
    assert args.recipe == str(recipe) and args.recipe_values["num_train_epochs"] == 5
    recipe.write_text("learning_rat: 1.0\n")
    with pytest.raises(SystemExit, match="unknown argument.*learning_rat"):
        parse_args_with_recipe(_parser(), ["--config", str(recipe)])


def test_shipped_recipes_parse_with_the_script(tmp_path):
    import run_glue_distill

    from .distill_fixtures import REPO_ROOT

    for recipe in sorted((REPO_ROOT / "configuration").glob("*.yaml")):
        if recipe.name.startswith("accelerate_") or recipe.name in ("general.yaml", "attention_transfer.yaml"):
            continue
        args = run_glue_distill.parse_args(
            ["--config", str(recipe), "--model_name_or_path", "m", "--output_dir", "o", "--mode", "finetune"]
        )
        assert args.task_name == recipe.stem and args.learning_rate > 0
    import run_distill_general

    general = run_distill_general.parse_args(
        [
            "--config",
            str(REPO_ROOT / "configuration" / "general.yaml"),
            "--teacher_name_or_path",
            "t",
            "--output_dir",
            "o",
        ]
    )
    assert general.alpha_kd == 5.0 and general.text_sources == "sst2,cola,mrpc,rte,stsb,imdb"
    transfer = run_distill_general.parse_args(
        ["--config", str(REPO_ROOT / "configuration" / "attention_transfer.yaml"), "--teacher_name_or_path", "t"]
        + ["--output_dir", "o"]
    )
    assert transfer.objective == "attention_transfer" and transfer.keep_pairs is True
    assert transfer.scalar_learning_rate > transfer.learning_rate and transfer.max_train_steps == 800


def test_task_recipes_are_the_base_recipe_plus_their_own_few_values(tmp_path):
    import yaml

    from modeling_inhibidistilbert.distill.training import load_recipe

    from .distill_fixtures import REPO_ROOT

    base = load_recipe(REPO_ROOT / "configuration" / "base" / "task.yaml")
    assert "task_name" not in base and base["learning_rate"] == 3e-5
    for recipe in sorted((REPO_ROOT / "configuration").glob("*.yaml")):
        if recipe.name.startswith("accelerate_") or recipe.name in ("general.yaml", "attention_transfer.yaml"):
            continue
        own = yaml.safe_load(recipe.read_text())
        assert own.pop("base") == "base/task.yaml" and own.pop("task_name") == recipe.stem
        assert len(own) <= 5 and all(base.get(key) != value for key, value in own.items()), recipe.name  # changes
        assert load_recipe(recipe) == {**base, "task_name": recipe.stem, **own}
    # one override path: a recipe overrides its base, the command line overrides both
    (tmp_path / "shared.yaml").write_text("learning_rate: 5.0e-5\nnum_train_epochs: 4\ncenter_scores: false\n")
    (tmp_path / "mine.yaml").write_text("base: shared.yaml\nnum_train_epochs: 9\n")
    args = parse_args_with_recipe(_parser(), ["--config", str(tmp_path / "mine.yaml"), "--learning_rate", "0.5"])
    assert args.num_train_epochs == 9 and args.learning_rate == 0.5 and args.center_scores is False
    assert args.recipe_values["learning_rate"] == 5e-5 and "base" not in args.recipe_values
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(SystemExit, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_shipped_accelerate_configs_load_and_launch_as_documented(monkeypatch):
    """Each configuration/accelerate_*.yaml loads with Accelerate's own loader (no unknown keys) and `accelerate launch
    --config_file` turns it into the documented mode: CPU, one GPU, DDP, or FSDP2 wrapping the models' blocks."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType
    from accelerate.utils.launch import prepare_multi_gpu_env, prepare_simple_launcher_cmd_env
    from transformers.models.distilbert import modeling_distilbert

    from modeling_inhibidistilbert import modeling_inhibidistilbert

    from .distill_fixtures import REPO_ROOT

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    expected = {  # name: (distributed_type, processes, mixed precision, use_cpu)
        "accelerate_cpu.yaml": (DistributedType.NO, 1, "no", True),
        "accelerate_single_gpu.yaml": (DistributedType.NO, 1, "bf16", False),
        "accelerate_multi_gpu.yaml": (DistributedType.MULTI_GPU, 2, "bf16", False),
        "accelerate_fsdp.yaml": (DistributedType.FSDP, 2, "bf16", False),
    }
    shipped = sorted(p.name for p in (REPO_ROOT / "configuration").glob("accelerate_*.yaml"))
    assert shipped == sorted(expected)
    envs = {}
    for name, (distributed_type, processes, precision, use_cpu) in expected.items():
        path = str(REPO_ROOT / "configuration" / name)
        config = load_config_from_file(path)
        assert isinstance(config, ClusterConfig), name
        assert config.distributed_type == distributed_type, name
        assert (config.num_processes, config.num_machines, config.mixed_precision) == (processes, 1, precision), name
        assert bool(config.use_cpu) is use_cpu, name

        args = launch_command_parser().parse_args(["--config_file", path, "run_glue_distill.py"])
        _validate_launch_command(args)
        assert (args.multi_gpu, args.use_fsdp) == (
            distributed_type == DistributedType.MULTI_GPU,
            distributed_type == DistributedType.FSDP,
        ), name
        assert (args.num_processes, args.mixed_precision) == (processes, precision), name
        if distributed_type == DistributedType.NO:
            _, envs[name] = prepare_simple_launcher_cmd_env(args)
            assert envs[name]["ACCELERATE_USE_CPU"] == str(use_cpu), name
        else:
            envs[name] = prepare_multi_gpu_env(args)
        assert envs[name]["ACCELERATE_MIXED_PRECISION"] == precision, name
    assert "ACCELERATE_USE_FSDP" not in envs["accelerate_multi_gpu.yaml"]
    env = envs["accelerate_fsdp.yaml"]
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
    # the block class FSDP wraps exists under that name in both the student and the teacher architecture
    for module in (modeling_inhibidistilbert, modeling_distilbert):
        assert isinstance(getattr(module, env["FSDP_TRANSFORMER_CLS_TO_WRAP"], None), type), module.__name__


def test_output_dir_rules(tmp_path):
    identity = {"task_name": "sst2", "mode": "distill"}
    assert prepare_output_dir(tmp_path / "new", identity, None, overwrite=False) is None
    folder = tmp_path / "used"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(OutputDirError, match="not empty.*--overwrite_output_dir"):
        prepare_output_dir(folder, identity, None, overwrite=False)
    with pytest.raises(OutputDirError, match="holds no run"):
        prepare_output_dir(folder, identity, "latest", overwrite=False)
    (folder / "training_args.json").write_text(json.dumps({"task_name": "cola", "mode": "distill"}))
    with pytest.raises(OutputDirError, match="another run.*task_name"):
        prepare_output_dir(folder, identity, "latest", overwrite=False)
    assert (folder / "notes.txt").read_text() == "keep me"
    (folder / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    prepare_output_dir(folder, identity, None, overwrite=True)
    assert not (folder / "checkpoints").exists() and not (folder / "training_args.json").exists()
    assert (folder / "notes.txt").exists()  # only what a run of the scripts writes is removed


def test_output_dir_resume_semantics(tmp_path):
    """`latest` resumes what is there and never removes it; it starts over only where nothing is lost."""
    identity = {"task_name": "sst2", "mode": "distill"}
    fresh = tmp_path / "fresh"
    assert prepare_output_dir(fresh, identity, "latest", overwrite=False) is None  # missing folder: from scratch
    fresh.mkdir()
    assert prepare_output_dir(fresh, identity, "latest", overwrite=True) is None  # empty folder: from scratch

    folder = tmp_path / "run"
    (folder / "checkpoints" / "best_model-2").mkdir(parents=True)
    (folder / "training_args.json").write_text(json.dumps(identity))
    (folder / "log_history.jsonl").write_text("{}\n")
    # an attempt of the same run stopped before its first checkpoint: it starts again, its partial files go
    assert prepare_output_dir(folder, identity, "latest", overwrite=False) is None
    assert not (folder / "checkpoints").exists() and not (folder / "log_history.jsonl").exists()

    (folder / "training_args.json").write_text(json.dumps(identity))
    for step in (3, 6):
        (folder / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (folder / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (folder / "checkpoints" / ".tmp-checkpoint-9").mkdir()  # a save that was interrupted: never picked
    for overwrite in (False, True):  # with or without --overwrite_output_dir: resume, keep every checkpoint
        assert prepare_output_dir(folder, identity, "latest", overwrite=overwrite) == (
            folder / "checkpoints" / "checkpoint-6"
        )
        assert (folder / "checkpoints" / "checkpoint-3").is_dir() and (folder / "training_args.json").is_file()
    explicit = folder / "checkpoints" / "checkpoint-3"
    assert prepare_output_dir(folder, identity, str(explicit), overwrite=False) == explicit

    other = {"task_name": "cola", "mode": "distill"}
    with pytest.raises(OutputDirError, match="another run"):
        prepare_output_dir(folder, other, "latest", overwrite=False)
    with pytest.raises(OutputDirError, match="another run"):
        prepare_output_dir(folder, other, str(explicit), overwrite=True)
    assert (folder / "checkpoints" / "checkpoint-6").is_dir()
    barrier_calls = []
    assert prepare_output_dir(folder, other, "latest", overwrite=True, barrier=lambda: barrier_calls.append(1)) is None
    assert barrier_calls == [1] and not (folder / "checkpoints").exists()  # overwrite: the other run is replaced

    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "training_args.json").write_text(json.dumps(identity))
    (finished / "all_results.json").write_text("{}")
    with pytest.raises(OutputDirError, match="finished.*--overwrite_output_dir"):
        prepare_output_dir(finished, identity, "latest", overwrite=False)
    assert (finished / "all_results.json").is_file()
    assert prepare_output_dir(finished, identity, "latest", overwrite=True) is None
    assert not (finished / "all_results.json").exists()
