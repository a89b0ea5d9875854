"""Adapters on tiny randomly initialised models saved and loaded locally, and DMD generation (000 A.2)."""

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # two pytest workers on two cores: avoid oversubscription

from edgesim.studies.dmd.adapters import (
    LlavaNextVideoYesNoAdapter,
    TorchClassifierAdapter,
    ViltYesNoAdapter,
    capture_output,
    check_device,
    parse_yes_no,
    yes_no_probs,
)
from edgesim.studies.dmd.generate import confidence_features, generate
from edgesim.studies.samples import Sample
from profilers.errors import EdgesimError
from profilers.models import build

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "<video>", "<image>", "[CLS]", "[SEP]", "USER:", "ASSISTANT:", "yes", "no",
         "is", "the", "person", "in", "image", "falling?", "answer", "or", "no.", "Answer", "Yes", "No", "maybe"]


def tiny_tokenizer(path):
    """A real WordLevel tokenizer built locally, wrapped as a transformers fast tokenizer and saved/loaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def images(n, size=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(n)]


def test_confidence_features():
    f = confidence_features(np.array([[0.2, 0.8], [0.5, 0.5]]))
    assert f["pred"].tolist() == [1, 0]
    assert np.allclose(f["max_prob"], [0.8, 0.5]) and np.allclose(f["margin"], [0.6, 0.0])
    assert np.allclose(f["entropy"], [-(0.2 * np.log(0.2) + 0.8 * np.log(0.8)), np.log(2)])


def test_torch_adapter_hooks_named_layer_and_unknown_layer_is_one_line():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    ad = TorchClassifierAdapter(net, "2")
    probs, hidden = ad.predict([torch.rand(3, 2, 2) for _ in range(5)], hidden_layer="2")
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1) and hidden.shape == (5, 7) and (hidden >= 0).all()
    with pytest.raises(EdgesimError, match="hidden layer 'nope' not found"):
        ad.predict([torch.rand(3, 2, 2)], hidden_layer="nope")


def tiny_vilt(tmp_path, hidden=32, layers=1, image_size=32):
    """A tiny ViLT VQA saved locally with yes/no at non-trivial label ids and the answer layer's bias set so that
    'yes' wins by a wide margin: a swap of the yes/no ids cannot go unnoticed."""
    from transformers import ViltConfig, ViltForQuestionAnswering

    torch.manual_seed(0)
    labels = {0: "no", 1: "maybe", 2: "yes"}
    cfg = ViltConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden,
                     image_size=image_size, patch_size=16, max_position_embeddings=40, vocab_size=len(WORDS), num_images=1,
                     id2label=labels, label2id={v: k for k, v in labels.items()})
    model = ViltForQuestionAnswering(cfg)
    with torch.no_grad():
        model.classifier[3].weight.mul_(20.0)  # the hidden features move the logits by about a unit
        model.classifier[3].bias.copy_(torch.tensor([-2.0, 0.0, 2.0]))
    model.save_pretrained(tmp_path)
    tiny_tokenizer(tmp_path)
    return model.eval()


def test_vilt_yes_no_adapter_tiny_model_saved_and_loaded(tmp_path):
    """Catches: swapped yes/no ids, and a hook on another 2h-wide layer (classifier.0 Linear or classifier.1 LayerNorm)."""
    model = tiny_vilt(tmp_path)
    ad = ViltYesNoAdapter.from_pretrained(str(tmp_path), question="is the person in the image falling?")
    probs, hidden = ad.predict(images(3), hidden_layer=ad.default_hidden_layer)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1)
    assert hidden.shape == (3, 64)  # 2 x hidden: 1536 for ViLT-B (000 A.3)
    # the hooked features are the last hidden layer: the answer layer applied to them gives the model's logits
    logits = model.classifier[3](torch.from_numpy(hidden)).detach().numpy()
    log_odds = logits[:, model.config.label2id["yes"]] - logits[:, model.config.label2id["no"]]
    np.testing.assert_allclose(np.log(probs[:, 1] / probs[:, 0]), log_odds, atol=1e-3)
    assert (probs[:, 1] > 0.8).all()  # the bias makes 'yes' win: P(yes) is column 1


def test_vilt_b_classifier_hidden_is_1536_and_feeds_the_answer_layer():
    """The registry's ViLT has dandelin/vilt-b32-finetuned-vqa's config (its config.json: hidden 768, 12 layers and
    heads, MLP 3072, 384 px, patch 32, 3129 answers), and its classifier_hidden split point is the 1536-wide
    input of the answer layer - the layer the adapter hooks (classifier.2)."""
    model = build("vilt", input_size=64)
    cfg = model.extra["config"]
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (768, 12, 12, 3072)
    assert (cfg.image_size, cfg.patch_size, cfg.num_labels) == (384, 32, 3129)
    x = model.example_input(1)
    k = dict(model.split_points)["classifier_hidden"]
    h = x
    with torch.no_grad():
        for block in model.blocks[:k]:
            h = block(h)
        hf = model.extra["torch_model"]
        with capture_output(hf, ViltYesNoAdapter.HIDDEN_LAYER) as store:
            logits = hf(input_ids=x["input_ids"], pixel_values=x["pixel_values"]).logits
    assert h.shape == (1, 1536)
    torch.testing.assert_close(torch.from_numpy(store["value"]), h, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.blocks[k](h), logits, rtol=1e-4, atol=1e-4)


def test_vilt_preprocessing_matches_vilt_image_processor_on_a_non_square_image():
    """Catches a square resize: ViLT keeps the aspect ratio (shortest edge 384, longest <= 640, multiples of 32)."""
    from PIL import Image
    from transformers import ViltImageProcessor

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (50, 90, 3), dtype=np.uint8))
    ad = ViltYesNoAdapter.__new__(ViltYesNoAdapter)
    ad.processor = ViltImageProcessor(size={"shortest_edge": 384})
    pixels, mask = ad.pixels([im, torch.from_numpy(np.array(im)).permute(2, 0, 1) / 255.0])
    ref = ViltImageProcessor()(im, return_tensors="pt")  # dandelin/vilt-b32-finetuned-vqa's preprocessing
    assert pixels.shape[-2] != pixels.shape[-1] and pixels.shape[-2:] == ref["pixel_values"].shape[-2:]
    torch.testing.assert_close(pixels[:1], ref["pixel_values"])
    torch.testing.assert_close(mask[:1], ref["pixel_mask"])
    torch.testing.assert_close(pixels[1:], ref["pixel_values"], atol=1e-6, rtol=0)  # a tensor in [0, 1] too


def test_vilt_dtype_and_device_options(tmp_path):
    tiny_vilt(tmp_path)
    ad = ViltYesNoAdapter.from_pretrained(str(tmp_path), question="is the person in the image falling?", dtype="bfloat16")
    assert next(ad.model.parameters()).dtype == torch.bfloat16
    probs, hidden = ad.predict(images(2), hidden_layer=ad.default_hidden_layer)
    assert np.isfinite(probs).all() and (probs[:, 1] > 0.8).all() and hidden.shape == (2, 64)
    with pytest.raises(EdgesimError, match="--dtype 'float8'"):
        ViltYesNoAdapter.from_pretrained(str(tmp_path), dtype="float8")
    with pytest.raises(EdgesimError, match="--device 'tpu'"):
        check_device("tpu")


def test_vilt_without_yes_no_labels_is_one_line(tmp_path):
    from transformers import ViltConfig, ViltForQuestionAnswering

    cfg = ViltConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                     patch_size=16, vocab_size=30, id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})
    with pytest.raises(EdgesimError, match="lacks 'yes'/'no'"):
        ViltYesNoAdapter(ViltForQuestionAnswering(cfg), question_ids=[1, 2])


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(EdgesimError, match="not found locally"):
        ViltYesNoAdapter.from_pretrained(str(tmp_path / "nothing"))


@pytest.mark.parametrize("text,expected", [("yes", 1), (" Yes, the person fell", 1), ("no.", 0), ("No", 0), ("maybe", None), ("", None), ("nothing", None)])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) == expected


def tiny_llava(tmp_path):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    torch.manual_seed(0)
    tiny_tokenizer(tmp_path)  # writes the tokenizer files next to the model
    text = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
                              projection_dim=32)
    cfg = LlavaNextVideoConfig(vision_config=vision, text_config=text, video_token_index=WORDS.index("<video>"),
                               image_token_index=WORDS.index("<image>"), vision_feature_layer=-1, spatial_pool_stride=2,
                               image_grid_pinpoints=[[32, 32]])
    LlavaNextVideoForConditionalGeneration(cfg).save_pretrained(tmp_path)
    return LlavaNextVideoYesNoAdapter.from_pretrained(str(tmp_path), question="is the person in the image falling?",
                                                      prompt_template="USER: <video> {question} Answer yes or no. ASSISTANT:")


def test_llava_next_video_adapter_tiny_model(tmp_path):
    ad = tiny_llava(tmp_path)
    probs, hidden = ad.predict(images(2), hidden_layer=None)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1) and hidden is None
    assert ad._n_video_tokens == (32 // 8 // 2) ** 2  # 4x4 patches pooled by stride 2
    assert ad.answered == 2 and 0 <= ad.unparsed <= 2
    assert sorted(ad.yes_tokens) == sorted([WORDS.index("yes"), WORDS.index("Yes")])  # both capitalisations
    assert sorted(ad.no_tokens) == sorted([WORDS.index("no"), WORDS.index("No")])


def test_llava_yes_no_probability_sums_both_capitalisations():
    logits = torch.full((1, len(WORDS)), -20.0)
    logits[0, WORDS.index("Yes")] = 3.0  # the model answers "Yes": P(yes) must count it
    logits[0, WORDS.index("no")] = 2.0
    probs = yes_no_probs(logits, [WORDS.index("yes"), WORDS.index("Yes")], [WORDS.index("no"), WORDS.index("No")])
    np.testing.assert_allclose(probs[0], [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-5)


def test_llava_parsed_text_decides_and_unparsed_answers_are_counted(tmp_path, monkeypatch):
    """Catches a disabled "parsed text decides" branch: the first token favours yes, the text says no."""
    from types import SimpleNamespace

    ad = tiny_llava(tmp_path)
    first = torch.full((3, len(WORDS)), -20.0)
    first[:, WORDS.index("Yes")] = 2.0  # every first step leans to yes (p = 0.88)
    first[:, WORDS.index("no")] = 0.0
    answers = ["no", "Yes", "maybe"]

    def generate(input_ids, **_kw):
        new = torch.tensor([[WORDS.index(a)] for a in answers])
        return SimpleNamespace(scores=[first], sequences=torch.cat([input_ids.cpu(), new], dim=1))

    monkeypatch.setattr(ad.model, "generate", generate)
    probs, _ = ad.predict(images(3), hidden_layer=None)
    p_yes = np.e ** 2 / (1 + np.e ** 2)
    np.testing.assert_allclose(probs[:, 1], [1 - p_yes, p_yes, p_yes], rtol=1e-5)  # "no" wins for the first
    assert ad.unparsed == 1 and ad.answered == 3  # "maybe": prediction from the probabilities, counted


def test_generate_trace_columns_agreement_and_split():
    torch.manual_seed(0)
    edge = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    cloud = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    samples = [Sample(f"img{i}.jpg", torch.rand(3, 2, 2), i % 2) for i in range(20)]
    tr = generate(samples, TorchClassifierAdapter(edge), TorchClassifierAdapter(cloud), hidden_layer="2", batch_size=7, seed=1)
    assert list(tr.columns[:10]) == ["sample_id", "label", "edge_pred", "edge_max_prob", "edge_margin", "edge_entropy",
                                     "cloud_pred", "cloud_max_prob", "agree", "split"]
    assert (tr.agree == (tr.edge_pred == tr.cloud_pred)).all()
    assert sorted(tr.split.value_counts().to_dict().items()) == [("test", 6), ("train", 14)]
    assert tr.groupby("split").label.mean().to_dict() == {"test": 0.5, "train": 0.5}  # stratified
    assert len(tr.hidden.iloc[0]) == 6
    again = generate(samples, TorchClassifierAdapter(edge), TorchClassifierAdapter(cloud), hidden_layer="2", seed=1)
    assert (again.split == tr.split).all()
    with pytest.raises(EdgesimError, match="hidden layer"):
        generate(samples, TorchClassifierAdapter(edge), TorchClassifierAdapter(cloud))
