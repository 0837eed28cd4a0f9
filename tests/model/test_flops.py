"""Cost model against hand-computed values (arithmetic written out as literals)."""

import json

import pytest

from ravit_keras.config import get_config
from ravit_keras.model import flops

# CIFAR-10: d = 128, h = 512; branch tokens n1 = 4*4 + 1 = 17, n2 = 8*8 + 1 = 65.
CIFAR_MAC_1 = 2 * 17 * 17 * 128 + 4 * 17 * 128 * 128 + 2 * 17 * 128 * 512  # 3,416,320
CIFAR_MAC_2 = 2 * 65 * 65 * 128 + 4 * 65 * 128 * 128 + 2 * 65 * 128 * 512  # 13,861,120
# Tiny ImageNet: d = 768, h = 3072; tokens 17, 65, 257 (16, 32, 64 px, P = 4).
TINY_MAC_1 = 2 * 17 * 17 * 768 + 4 * 17 * 768 * 768 + 2 * 17 * 768 * 3072
TINY_MAC_2 = 2 * 65 * 65 * 768 + 4 * 65 * 768 * 768 + 2 * 65 * 768 * 3072
TINY_MAC_3 = 2 * 257 * 257 * 768 + 4 * 257 * 768 * 768 + 2 * 257 * 768 * 3072
# ImageNet: 64, 128, 224 px with P = 16 -> tokens 17, 65, 197.
IMNET_MAC_3 = 2 * 197 * 197 * 768 + 4 * 197 * 768 * 768 + 2 * 197 * 768 * 3072


def test_layer_macs_hand_values():
    assert CIFAR_MAC_1 == 3_416_320
    assert CIFAR_MAC_2 == 13_861_120
    assert flops.layer_macs(17, 128, 512) == CIFAR_MAC_1
    assert flops.layer_macs(65, 128, 512) == CIFAR_MAC_2
    assert flops.layer_macs(257, 768, 3072) == TINY_MAC_3


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_layer_macs_rejects_bad_tokens(bad):
    with pytest.raises(ValueError, match="num_tokens"):
        flops.layer_macs(bad, 128, 512)


def test_cifar10_1_3_branches():
    costs = flops.branch_costs(get_config("cifar10"))
    assert [c.branch for c in costs] == [0, 1]
    assert [c.image_size for c in costs] == [(16, 16), (32, 32)]
    assert [c.tokens for c in costs] == [17, 65]
    assert [c.layers for c in costs] == [1, 3]
    assert [c.macs_per_layer for c in costs] == [CIFAR_MAC_1, CIFAR_MAC_2]
    assert [c.macs for c in costs] == [1 * CIFAR_MAC_1, 3 * CIFAR_MAC_2]
    # Patch embedding: patches * P*P*3 * d; heads: d * classes.
    assert [c.patch_embedding_macs for c in costs] == [16 * 4 * 4 * 3 * 128, 64 * 4 * 4 * 3 * 128]
    assert [c.head_macs for c in costs] == [128 * 10, 128 * 10]


def test_cifar10_model_and_exit_macs():
    config = get_config("cifar10")
    assert flops.model_macs(config) == 1 * 3_416_320 + 3 * 13_861_120 == 44_999_680
    assert flops.exit_macs(config) == [3_416_320, 44_999_680]


def test_classic_vit4_vs_ravit_1_3_ratio():
    config = get_config("cifar10")
    classic = flops.model_macs(config.classic(4))
    assert classic == 4 * 13_861_120 == 55_444_480
    assert flops.exit_macs(config.classic(4)) == [55_444_480]
    ratio = flops.model_macs(config) / classic
    assert ratio == pytest.approx(44_999_680 / 55_444_480)
    assert ratio == pytest.approx(0.81, abs=0.005)


def test_tinyimagenet_skipped_branch():
    config = get_config("tinyimagenet", layers="2-0-3")
    costs = flops.branch_costs(config)
    assert [c.tokens for c in costs] == [17, 65, 257]
    assert [c.layers for c in costs] == [2, 0, 3]
    assert [c.macs_per_layer for c in costs] == [TINY_MAC_1, TINY_MAC_2, TINY_MAC_3]
    assert [c.macs for c in costs] == [2 * TINY_MAC_1, 0, 3 * TINY_MAC_3]
    assert costs[1].patch_embedding_macs == 0 and costs[1].head_macs == 0
    assert not costs[1].is_exit
    assert costs[2].patch_embedding_macs == 256 * 4 * 4 * 3 * 768
    assert costs[0].head_macs == 768 * 200
    assert flops.model_macs(config) == 2 * TINY_MAC_1 + 3 * TINY_MAC_3
    # Two exits (exit_1, exit_3); the skipped branch adds nothing to the running sum.
    assert flops.exit_macs(config) == [2 * TINY_MAC_1, 2 * TINY_MAC_1 + 3 * TINY_MAC_3]
    assert TINY_MAC_1 == 120_768_000


def test_imagenet_cumulative_exits():
    config = get_config("imagenet", layers="1-1-8")
    assert [c.tokens for c in flops.branch_costs(config)] == [17, 65, 197]
    assert flops.exit_macs(config) == [
        TINY_MAC_1,
        TINY_MAC_1 + TINY_MAC_2,
        TINY_MAC_1 + TINY_MAC_2 + 8 * IMNET_MAC_3,
    ]


@pytest.mark.parametrize(
    "name,layers,scale,tokens",
    [
        # 32/1.5 = 21.3 -> 5 patches of 4 -> 25 + 1; 32 -> 64 + 1.
        ("cifar10", "1-3", 1.5, [26, 65]),
        # 32/1.2 = 26.7 -> 7 patches -> 49 + 1.
        ("cifar10", "1-3", 1.2, [50, 65]),
        # 64/2.25 = 28.4 -> 7 patches -> 50; 64/1.5 = 42.7 -> 11 patches -> 122; 257.
        ("tinyimagenet", "1-1-1", 1.5, [50, 122, 257]),
        # 64/1.44 = 44.4 -> 11 -> 122; 64/1.2 = 53.3 -> 13 -> 170; 257.
        ("tinyimagenet", "1-1-1", 1.2, [122, 170, 257]),
    ],
)
def test_scale_token_counts(name, layers, scale, tokens):
    config = get_config(name, layers=layers, scale=scale)
    costs = flops.branch_costs(config)
    assert [c.tokens for c in costs] == tokens
    d, h = config.hidden_dim, config.mlp_dim
    assert [c.macs_per_layer for c in costs] == [
        2 * n * n * d + 4 * n * d * d + 2 * n * d * h for n in tokens
    ]


def test_expected_macs_histogram():
    config = get_config("cifar10")
    # 30 images leave at exit 1, 70 at exit 2.
    want = (30 * 3_416_320 + 70 * 44_999_680) / 100
    assert flops.expected_macs(config, [30, 70]) == pytest.approx(want)
    assert flops.expected_macs([3_416_320, 44_999_680], [30, 70]) == pytest.approx(want)
    assert flops.expected_macs(config, [5, 0]) == 3_416_320
    assert flops.expected_macs([10, 30, 100], [2, 1, 1]) == 37.5


@pytest.mark.parametrize(
    "counts,match",
    [([1, 2, 3], "3 entries"), ([1, -1], "exit_counts\\[1\\] = -1"), ([0, 0], "sum to 0")],
)
def test_expected_macs_validation(counts, match):
    with pytest.raises(ValueError, match=match):
        flops.expected_macs([10, 20], counts)


def test_cost_report_json_ready():
    config = get_config("tinyimagenet", layers="2-0-3")
    report = flops.cost_report(config)
    back = json.loads(json.dumps(report))
    assert back["config"] == "tinyimagenet"
    assert back["layers"] == "2-0-3"
    assert back["macs"] == 2 * TINY_MAC_1 + 3 * TINY_MAC_3
    assert back["flops"] == 2 * back["macs"]
    assert back["mflops"] == pytest.approx(2 * back["macs"] / 1e6)
    assert back["exit_names"] == ["exit_1", "exit_3"]
    assert back["exit_macs"] == [2 * TINY_MAC_1, 2 * TINY_MAC_1 + 3 * TINY_MAC_3]
    assert back["exit_flops"] == [2 * c for c in back["exit_macs"]]
    assert len(back["branches"]) == 3
    assert back["branches"][1]["layers"] == 0 and back["branches"][1]["macs"] == 0
    assert back["branches"][2]["image_size"] == [64, 64]
    assert back["extra_macs"] == {
        "patch_embedding": 16 * 48 * 768 + 256 * 48 * 768,
        "heads": 2 * 768 * 200,
    }


def test_format_cost_table():
    text = flops.format_cost_table(get_config("cifar10"))
    assert "44,999,680" in text and "45.00 M" in text
    assert "13,861,120" in text and "16x16" in text
    assert "90.00 MFLOPs" in text
    assert "patch embeddings" in text and "exit heads" in text
    skipped = flops.format_cost_table(get_config("tinyimagenet", layers="2-0-3"))
    assert "skipped" in skipped and "exit_3" in skipped


# LIT: attention-free MLP blocks cost 2·n·d·h -------------------------------------------


def test_mixed_spec_hand_values():
    config = get_config("cifar10", layers="1-3", mlp_layers="0-1")
    mlp_2 = 2 * 65 * 128 * 512  # 8,519,680: branch 2's MLP block.
    assert mlp_2 == 8_519_680
    assert flops.layer_macs(65, 128, 512, attention=False) == mlp_2
    costs = flops.branch_costs(config)
    assert costs[1].mlp_layers == 1 and costs[1].macs_per_mlp_layer == mlp_2
    assert costs[1].macs == 2 * 13_861_120 + mlp_2 == 36_241_920
    assert flops.exit_macs(config) == [3_416_320, 3_416_320 + 36_241_920]
    assert flops.model_macs(config) == 39_658_240
    three = get_config("tiny3", layers="2-0-3", mlp_layers="1-0-2")
    n1, n3, d, h = three.num_tokens(0), three.num_tokens(2), three.hidden_dim, three.mlp_dim
    full = lambda n: 2 * n * n * d + 4 * n * d * d + 2 * n * d * h  # noqa: E731
    assert flops.model_macs(three) == (full(n1) + 2 * n1 * d * h) + (full(n3) + 2 * 2 * n3 * d * h)
