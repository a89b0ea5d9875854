"""Adapters on tiny randomly initialised models saved and loaded locally, and DMD generation (000 A.2)."""

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # two pytest workers on two cores: avoid oversubscription

from edgesim.studies.dmd.adapters import (
    LlavaNextVideoYesNoAdapter,
    TorchClassifierAdapter,
    ViltYesNoAdapter,
    parse_yes_no,
)
from edgesim.studies.dmd.generate import Sample, confidence_features, generate
from profilers.errors import EdgesimError

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "<video>", "<image>", "[CLS]", "[SEP]", "USER:", "ASSISTANT:", "yes", "no",
         "is", "the", "person", "in", "image", "falling?", "answer", "or", "no.", "Answer"]


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


def test_vilt_yes_no_adapter_tiny_model_saved_and_loaded(tmp_path):
    from transformers import ViltConfig, ViltForQuestionAnswering

    torch.manual_seed(0)
    cfg = ViltConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                     patch_size=16, max_position_embeddings=40, vocab_size=len(WORDS), num_images=1,
                     id2label={0: "no", 1: "yes", 2: "maybe"}, label2id={"no": 0, "yes": 1, "maybe": 2})
    ViltForQuestionAnswering(cfg).save_pretrained(tmp_path)
    tiny_tokenizer(tmp_path)
    ad = ViltYesNoAdapter.from_pretrained(str(tmp_path), question="is the person in the image falling?")
    probs, hidden = ad.predict(images(3), hidden_layer=ad.default_hidden_layer)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1)
    assert hidden.shape == (3, 2 * cfg.hidden_size)  # 1536 for ViLT-B (000 A.3)
    # the probabilities are the softmax of exactly the 'no'/'yes' logits
    model = ViltForQuestionAnswering.from_pretrained(tmp_path, local_files_only=True).eval()
    assert ad.yes_id == 1 and ad.no_id == 0 and model.config.hidden_size == 32


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


def test_llava_next_video_adapter_tiny_model(tmp_path):
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
    ad = LlavaNextVideoYesNoAdapter.from_pretrained(str(tmp_path), question="is the person in the image falling?",
                                                    prompt_template="USER: <video> {question} Answer yes or no. ASSISTANT:")
    probs, hidden = ad.predict(images(2), hidden_layer=None)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1) and hidden is None
    assert ad._n_video_tokens == (32 // 8 // 2) ** 2  # 4x4 patches pooled by stride 2


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
