"""cadence.param_groups / describe_groups on real architectures.

Expected depths, decay placement and rates are derived here from parameter names and module
types by rules written independently of cadence.groups; the optimizer checks compare one
plain SGD step against the closed-form update each group's values imply.
"""

from __future__ import annotations

import io
import re

import pytest
import torch
from torch import nn

import cadence
from cadence.groups import describe_groups, param_groups

NORMS = (nn.BatchNorm2d, nn.LayerNorm)


class MLP(nn.Sequential):
    def __init__(self) -> None:
        layers = [nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)]
        super().__init__(*layers)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.relu(self.bn2(self.conv2(x))).flatten(1))


class Encoder(nn.Module):
    LAYERS = 3

    def __init__(self, vocab: int = 20, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, self.LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.encoder(self.embed(x))).mean(1))


class TiedLM(nn.Module):
    def __init__(self, vocab: int = 20, dim: int = 8) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.h = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.wte(x)
        for block in self.h:
            h = torch.relu(block(h))
        return self.lm_head(self.ln_f(h))


def batch(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if isinstance(model, MLP):
        return torch.randn(4, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
    if isinstance(model, CNN):
        return torch.randn(4, 1, 6, 6, generator=g), torch.randint(0, 3, (4,), generator=g)
    tokens = torch.randint(0, 20, (4, 5), generator=g)
    if isinstance(model, TiedLM):
        return tokens, torch.randint(0, 20, (4, 5), generator=g)
    return tokens, torch.randint(0, 3, (4,), generator=g)


def loss_of(model: nn.Module) -> torch.Tensor:
    x, y = batch(model)
    out = model(x)
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


MODELS = [MLP, CNN, Encoder, TiedLM]


def by_tensor(groups: list[dict]) -> dict[int, dict]:
    return {id(p): g for g in groups for p in g["params"]}


def owner_of(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name.rpartition(".")[0])


# Independent depth rules, one per architecture, written from the names.
def expected_depth(model: nn.Module, name: str) -> int:
    if isinstance(model, MLP):
        return {"0": 0, "2": 1, "4": 2}[name.split(".")[0]]
    if isinstance(model, CNN):
        return {"conv1": 0, "bn1": 0, "conv2": 1, "bn2": 1, "fc": 2}[name.split(".")[0]]
    if isinstance(model, Encoder):
        m = re.match(r"encoder\.layers\.(\d+)\.", name)
        if m:
            return int(m.group(1)) + 1
        return 0 if name.startswith("embed.") else Encoder.LAYERS + 1
    m = re.match(r"h\.(\d+)\.", name)
    return int(m.group(1)) + 1 if m else (0 if name.startswith("wte.") else 3)


@pytest.mark.parametrize("cls", MODELS)
def test_no_decay_exactly_biases_and_norm_weights(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls()
    groups = param_groups(model, lr=1e-3, weight_decay=0.05)
    where = by_tensor(groups)
    for name, p in model.named_parameters():
        expect_free = name.endswith("bias") or isinstance(owner_of(model, name), NORMS)
        assert where[id(p)]["weight_decay"] == (0.0 if expect_free else 0.05), name
        assert where[id(p)]["name"] == ("no_decay" if expect_free else "decay"), name


@pytest.mark.parametrize("cls", MODELS)
def test_every_trainable_parameter_exactly_once(cls: type[nn.Module]) -> None:
    model = cls()
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, layer_decay=0.7)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    for g in groups:
        assert g["params"], "empty groups must not be emitted"
        assert g["num_params"] == sum(p.numel() for p in g["params"])
    assert len({g["name"] for g in groups}) == len(groups)


@pytest.mark.parametrize("cls", MODELS)
def test_layer_decay_follows_depth_from_names(cls: type[nn.Module]) -> None:
    model, lr, decay = cls(), 2e-3, 0.6
    groups = param_groups(model, lr=lr, weight_decay=0.1, layer_decay=decay)
    where = by_tensor(groups)
    depths = {name: expected_depth(model, name) for name, _ in model.named_parameters()}
    top = max(depths.values())
    for name, p in model.named_parameters():
        g = where[id(p)]
        assert g["depth"] == depths[name], name
        assert g["lr_scale"] == pytest.approx(decay ** (top - depths[name]), rel=1e-12)
        assert g["lr"] == pytest.approx(lr * decay ** (top - depths[name]), rel=1e-12)
        if isinstance(model, Encoder):
            label = "head" if depths[name] == top else f"layer{depths[name]}"
            assert g["name"].startswith(label + "."), name


@pytest.mark.parametrize("cls", MODELS)
def test_sgd_step_applies_each_group_lr_and_decay(cls: type[nn.Module]) -> None:
    torch.manual_seed(1)
    model = cls()
    model.train()
    groups = param_groups(model, lr=0.1, weight_decay=0.01, layer_decay=0.5)
    optimizer = torch.optim.SGD(groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss_of(model).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    where = by_tensor(groups)
    for name, p in model.named_parameters():
        g = where[id(p)]
        expected = before[name] - g["lr"] * (grads[name] + g["weight_decay"] * before[name])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", MODELS)
def test_adamw_accepts_groups_and_trains(cls: type[nn.Module]) -> None:
    torch.manual_seed(2)
    model = cls()
    optimizer = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.1, layer_decay=0.8))
    first = loss_of(model)
    for _ in range(5):
        optimizer.zero_grad()
        loss = loss_of(model)
        loss.backward()
        optimizer.step()
    assert loss_of(model).item() < first.item()
    assert all("name" in g and "lr_scale" in g for g in optimizer.param_groups)


def test_tied_weight_counted_once_and_reachable_by_either_name() -> None:
    model = TiedLM()
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, decay_embeddings=False)
    tied = [g for g in groups if any(p is model.wte.weight for p in g["params"])]
    assert len(tied) == 1 and tied[0]["weight_decay"] == 0.0
    assert sum(g["num_params"] for g in groups) == sum(p.numel() for p in model.parameters())
    # The pattern names only the head's alias of the tied tensor.
    groups = param_groups(model, lr=1e-3, groups={"out": {"pattern": "lm_head", "lr": 5e-4}})
    out = [g for g in groups if g["name"].startswith("out.")]
    assert [p for g in out for p in g["params"]] == [model.wte.weight]
    assert out[0]["lr"] == 5e-4
    torch.optim.AdamW(groups)  # torch rejects a tensor present in two groups


def test_frozen_parameters_left_out_and_depths_unchanged() -> None:
    model = Encoder()
    full = by_tensor(param_groups(model, lr=1e-3, layer_decay=0.5))
    for p in [*model.embed.parameters(), *model.encoder.layers[0].parameters()]:
        p.requires_grad_(False)
    groups = param_groups(model, lr=1e-3, layer_decay=0.5)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    for g in groups:
        assert all(full[id(p)]["lr"] == g["lr"] for p in g["params"])
    assert not any(g["name"].startswith("layer0.") for g in groups)


def test_function_groups_overrides_and_first_match_wins() -> None:
    model = Encoder()
    spec = {
        "head": {"pattern": ["head.*", "norm"], "lr_scale": 10.0, "weight_decay": 0.0},
        "early": {"pattern": "encoder.layers.0.*", "lr": 1e-5, "betas": (0.8, 0.9)},
        "encoder": {"pattern": "encoder.*"},  # layer 0 already taken by "early"
    }
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, groups=spec)
    where = by_tensor(groups)
    names = [g["name"] for g in groups]
    assert names == [
        "head.decay", "head.no_decay", "early.decay", "early.no_decay",
        "encoder.decay", "encoder.no_decay", "decay",
    ]
    assert where[id(model.head.weight)]["lr"] == pytest.approx(1e-2)
    assert where[id(model.head.weight)]["weight_decay"] == 0.0
    assert where[id(model.norm.weight)]["name"] == "head.no_decay"
    layer0 = model.encoder.layers[0].linear1.weight
    assert where[id(layer0)]["lr"] == 1e-5 and where[id(layer0)]["betas"] == (0.8, 0.9)
    assert where[id(model.encoder.layers[1].linear1.weight)]["name"] == "encoder.decay"
    assert where[id(model.embed.weight)]["name"] == "decay"
    optimizer = torch.optim.AdamW(groups)
    assert optimizer.param_groups[2]["betas"] == (0.8, 0.9)
    assert optimizer.param_groups[4]["betas"] == (0.9, 0.999)  # AdamW's default filled in
    listed = param_groups(
        model, lr=1e-3, weight_decay=0.1, groups=[{"name": k, **v} for k, v in spec.items()]
    )
    assert [g["name"] for g in listed] == names


def test_function_groups_combine_with_layer_decay() -> None:
    model = Encoder()
    groups = param_groups(
        model, lr=1e-3, layer_decay=0.5,
        groups={"backbone": {"pattern": ["embed", "encoder"], "lr": 1e-4},
                "head": {"pattern": ["head", "norm"], "layer_decay": None}},
    )
    where = by_tensor(groups)
    top = Encoder.LAYERS + 1
    for name, p in model.named_parameters():
        g = where[id(p)]
        if name.startswith(("embed", "encoder")):
            d = expected_depth(model, name)
            assert g["lr"] == pytest.approx(1e-4 * 0.5 ** (top - d)) and g["depth"] == d
            assert g["name"].startswith(f"backbone.layer{d}.")
        else:
            assert g["lr"] == 1e-3 and g["name"] in {"head.decay", "head.no_decay"}


def test_pattern_matching_nothing_lists_names() -> None:
    with pytest.raises(ValueError, match=r"groups\['new'\].*matches no parameter") as err:
        param_groups(Encoder(), lr=1e-3, groups={"new": {"pattern": "classifer.*"}})
    message = str(err.value)
    assert "head.weight" in message and "embed.weight" in message
    assert "encoder.layers.*.linear1.weight" in message  # block indices folded


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"lr": -1e-3}, ValueError, "lr must be finite and >= 0, got -0.001"),
        ({"lr": float("nan")}, ValueError, "lr must be finite"),
        ({"lr": "1e-3"}, TypeError, "lr must be a number"),
        ({"lr": 1e-3, "weight_decay": -0.1}, ValueError, "weight_decay must be finite"),
        ({"lr": 1e-3, "layer_decay": 0.0}, ValueError, r"layer_decay must be in \(0, 1\], got 0.0"),
        ({"lr": 1e-3, "layer_decay": 1.5}, ValueError, "layer_decay must be in"),
        ({"lr": 1e-3, "no_decay": "bias"}, TypeError, "no_decay must be a collection"),
        ({"lr": 1e-3, "groups": {"x": {"pattern": "head", "lrr": 1}}}, ValueError, "'lrr'"),
        ({"lr": 1e-3, "groups": {"x": {"pattern": "head", "lr": -1}}}, ValueError,
         r"groups\['x'\]\['lr'\] must be finite"),
        ({"lr": 1e-3, "groups": {"x": {"lr": 1}}}, ValueError, r"\['pattern'\] must be"),
        ({"lr": 1e-3, "groups": {"a.b": {"pattern": "head"}}}, ValueError, "without dots"),
        ({"lr": 1e-3, "groups": [{"pattern": "head"}]}, TypeError, "'name' key"),
        ({"lr": 1e-3, "layer_decay": 0.5,
          "groups": {"layer1": {"pattern": "encoder.layers.1", "layer_decay": None}}},
         ValueError, "occur twice"),
        ({"lr": 1e-3, "block_pattern": r"layers\.(\d+)"}, ValueError, "named group 'index'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        param_groups(Encoder(), **kwargs)


def test_no_trainable_parameters_or_not_a_module() -> None:
    model = MLP().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, lr=1e-3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        param_groups([nn.Parameter(torch.zeros(2))], lr=1e-3)  # type: ignore[arg-type]


def test_no_decay_rules_1d_embedding_and_patterns() -> None:
    class ViTish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
            self.scale = nn.Parameter(torch.ones(4))
            self.tok = nn.Embedding(5, 4)
            self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))

    model = ViTish()

    def free(**kw: object) -> set[str]:
        where = by_tensor(param_groups(model, lr=1.0, weight_decay=0.1, **kw))
        return {n for n, p in model.named_parameters() if where[id(p)]["weight_decay"] == 0}

    biases = {"blocks.0.bias", "blocks.1.bias"}
    assert free() == biases
    assert free(no_decay=("bias", "1d")) == biases | {"scale"}
    assert free(decay_embeddings=False) == biases | {"tok.weight"}
    assert free(no_decay=("bias", "cls_token", "0.weight")) == biases | {
        "cls_token", "blocks.0.weight"
    }


def test_norm_detection_by_type_and_class_name() -> None:
    class MyRMSNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4))

    model = nn.Sequential(
        nn.Linear(4, 4, bias=False), nn.GroupNorm(2, 4), nn.Linear(4, 4, bias=False),
        MyRMSNorm(), nn.Linear(4, 4, bias=False), nn.InstanceNorm1d(4, affine=True),
    )
    if hasattr(nn, "RMSNorm"):
        model.append(nn.RMSNorm(4))
    where = by_tensor(param_groups(model, lr=1.0, weight_decay=0.1))
    for name, p in model.named_parameters():
        linear = isinstance(owner_of(model, name), nn.Linear)
        assert where[id(p)]["weight_decay"] == (0.1 if linear else 0.0), name


def test_block_index_forms_and_stack_order() -> None:
    class Seq2Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Embedding(5, 4)
            self.encoder = nn.Module()
            self.encoder.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
            self.decoder = nn.Module()
            self.decoder.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
            self.decoder.final_norm = nn.LayerNorm(4)
            self.lm_head = nn.Linear(4, 5)

    class ResNetish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, 1)
            for i in range(1, 4):
                setattr(self, f"layer{i}", nn.Sequential(nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)))
            self.fc = nn.Linear(2, 2)

    cases = {
        Seq2Seq: {"shared": 0, "encoder.layers.0": 1, "encoder.layers.1": 2,
                  "decoder.layers.0": 3, "decoder.layers.1": 4, "decoder.final_norm": 5,
                  "lm_head": 5},
        ResNetish: {"conv1": 0, "layer1": 1, "layer2": 2, "layer3": 3, "fc": 4},
    }
    for cls, table in cases.items():
        model = cls()
        where = by_tensor(param_groups(model, lr=1.0, layer_decay=0.5))
        for name, p in model.named_parameters():
            prefix = next(k for k in table if name.startswith(k + "."))
            assert where[id(p)]["depth"] == table[prefix], name
            assert where[id(p)]["lr"] == pytest.approx(0.5 ** (max(table.values()) - table[prefix]))


def test_depth_fn_and_per_layer_groups_with_unit_decay() -> None:
    model = MLP()
    groups = param_groups(model, lr=1.0, layer_decay=0.5, depth_fn=lambda n: 3 * int(n[0]))
    where = by_tensor(groups)
    for name, p in model.named_parameters():
        assert where[id(p)]["lr"] == pytest.approx(0.5 ** (12 - 3 * int(name[0])))
    with pytest.raises(ValueError, match=r"depth_fn\('0.weight'\) returned -1"):
        param_groups(model, lr=1.0, depth_fn=lambda n: -1)
    names = [g["name"] for g in param_groups(model, lr=1.0, layer_decay=1.0)]
    assert names == [f"layer{d}.{k}" for d in range(3) for k in ("decay", "no_decay")]
    assert [g["name"] for g in param_groups(model, lr=1.0)] == ["decay", "no_decay"]


def test_describe_groups_table_from_list_and_optimizer() -> None:
    model = CNN()
    groups = param_groups(model, lr=3e-4, weight_decay=0.1, layer_decay=0.8)
    buffer = io.StringIO()
    text = describe_groups(groups, file=buffer)
    assert buffer.getvalue() == text + "\n"
    lines = text.splitlines()
    assert lines[0].split() == ["name", "depth", "tensors", "params", "lr", "weight_decay",
                                "lr_scale"]
    rows = {line.split()[0]: line.split() for line in lines[2:-2]}
    assert list(rows) == [g["name"] for g in groups]
    for g in groups:
        row = rows[g["name"]]
        assert int(row[2]) == len(g["params"])
        assert int(row[3].replace(",", "")) == g["num_params"]
        assert float(row[4]) == pytest.approx(g["lr"], rel=1e-3)
    total = lines[-1].split()
    assert total[0] == "total"
    assert int(total[1]) == len(list(model.parameters()))
    assert int(total[2].replace(",", "")) == sum(p.numel() for p in model.parameters())

    plain = torch.optim.SGD([{"params": [model.fc.weight]}, {"params": [model.fc.bias]}], lr=0.1)
    assert [line.split()[0] for line in describe_groups(plain).splitlines()[2:4]] == [
        "group0", "group1"
    ]
    assert describe_groups(torch.optim.AdamW(groups)).splitlines()[2:] == lines[2:]
    assert cadence.describe_groups is describe_groups and cadence.param_groups is param_groups
    with pytest.raises(TypeError, match="groups_or_optimizer"):
        describe_groups(model)  # type: ignore[arg-type]
