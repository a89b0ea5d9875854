"""Edge and cloud model adapters for DMD (000 section 3): a batch in, class probabilities and hidden features out.

TorchClassifierAdapter wraps any nn.Module classifier; ViltYesNoAdapter is 000's small model (ViLT VQA,
yes/no logits, hidden = the 2*hidden-wide layer of the classifier head, images prepared as ViltImageProcessor
does: shortest edge 384, longest <= 640, multiples of 32, padded with a pixel mask); LlavaNextVideoYesNoAdapter is
000's large model (LLaVA-NeXT-Video, a short generated answer parsed as yes/no). Both take a device (cpu, cuda)
and a dtype (float32, bfloat16, float16). Nothing is downloaded: checkpoints load with local_files_only=True.
The transformers API used (LlavaNextVideoForConditionalGeneration.model.get_video_features, ViltImageProcessor
with size_divisor) is that of the range pinned in pyproject.toml.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import numpy as np

from profilers.errors import EdgesimError

DEFAULT_QUESTION = "Is the person in the image falling?"  # 000 A.2: "a prompt telling them to report if a fall occurred"
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")


def torch_dtype(name: str):
    """torch dtype for a --dtype name; one line listing the known ones."""
    import torch

    if name not in DTYPES:
        raise EdgesimError(f"--dtype '{name}': expected one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def load_kwargs(dtype: str) -> dict:
    """from_pretrained keywords: local files only, weights loaded in `dtype` (`torch_dtype` before transformers 4.56)."""
    import transformers

    major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return {"local_files_only": True, key: torch_dtype(dtype)}


def check_device(name: str) -> str:
    """A --device name that torch can use here (cuda needs a GPU)."""
    import torch

    if name.split(":")[0] not in DEVICES:
        raise EdgesimError(f"--device '{name}': expected one of {', '.join(DEVICES)} (cuda:N for a given GPU)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EdgesimError(f"--device {name}: torch sees no CUDA GPU on this machine; use --device cpu")
    return name


class Adapter(Protocol):
    """A classifier seen by DMD: probabilities (B, C) and, when asked, the named hidden layer's features (B, H)."""

    default_hidden_layer: Optional[str]

    def predict(self, batch: Sequence[Any], hidden_layer: Optional[str] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Class probabilities and hidden features (None unless hidden_layer is given)."""
        ...


def find_module(model, name: str):
    """The submodule with this dotted name; one-line error listing some known names."""
    modules = dict(model.named_modules())
    if name not in modules:
        known = [n for n in modules if n][:12]
        raise EdgesimError(f"hidden layer '{name}' not found in {type(model).__name__}; e.g. {', '.join(known)}")
    return modules[name]


#: a hidden layer named 'NAME:input' is the named module's input (e.g. 'fc:input': the features the head reads)
INPUT_SUFFIX = ":input"


@contextlib.contextmanager
def capture_output(model, name: Optional[str]) -> Iterator[dict]:
    """Forward hook on the named module; the yielded dict gets 'value' = its output (its input for 'NAME:input')
    flattened to (B, -1)."""
    store: dict = {}
    if name is None:
        yield store
        return
    takes_input = name.endswith(INPUT_SUFFIX)
    module = find_module(model, name.removesuffix(INPUT_SUFFIX))

    def hook(_mod, inp, out):
        t = inp if takes_input else out
        t = t[0] if isinstance(t, (tuple, list)) else t
        store["value"] = t.detach().reshape(t.shape[0], -1).float().cpu().numpy()

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _to_image_tensor(item: Any):
    """A (C, H, W) float tensor in [0, 1] from a tensor, numpy array or PIL image (RGB)."""
    import torch

    if isinstance(item, torch.Tensor):
        t = item.float()
    elif isinstance(item, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(item)).float()
        if t.ndim == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
            t = t.permute(2, 0, 1)
        if t.max() > 1.0:
            t = t / 255.0
    else:  # PIL
        arr = np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr).permute(2, 0, 1)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    return t


def _to_pil(item: Any):
    """A PIL RGB image from a PIL image, or a (C, H, W) / (H, W, C) tensor or array in [0, 1] or 0..255."""
    from PIL import Image

    if hasattr(item, "convert"):
        return item.convert("RGB")
    t = _to_image_tensor(item)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def preprocess_images(batch: Sequence[Any], size: tuple[int, int], mean: Sequence[float], std: Sequence[float], channels: int = 3,
                      resize_px: Optional[int] = None):
    """Resize (bilinear; with resize_px: shorter side to resize_px, then the centre size crop, as torchvision's
    ImageClassification transform), convert to `channels` and normalise with torch ops only (no processor downloads)."""
    import torch
    import torch.nn.functional as F

    out = []
    for item in batch:
        t = _to_image_tensor(item)
        if t.shape[0] != channels:
            t = t.mean(0, keepdim=True).expand(channels, -1, -1) if channels in (1, 3) else t
            if channels == 1:
                t = t[:1]
        if resize_px:
            h, w = t.shape[-2:]
            scale = resize_px / min(h, w)
            hh, ww = max(size[0], round(h * scale)), max(size[1], round(w * scale))
            t = F.interpolate(t.unsqueeze(0), size=(hh, ww), mode="bilinear", align_corners=False, antialias=True).squeeze(0)
            top, left = (hh - size[0]) // 2, (ww - size[1]) // 2
            t = t[:, top:top + size[0], left:left + size[1]]
        else:
            t = F.interpolate(t.unsqueeze(0), size=size, mode="bilinear", align_corners=False).squeeze(0)
        out.append(t)
    x = torch.stack(out)
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def grouped_probs(probs: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Dataset-class probabilities from a model's: each class sums its outputs' probabilities, renormalised over the
    mapped outputs (an ImageNet head read as fall / no fall, say); rows whose mapped outputs hold no mass are uniform."""
    p = np.stack([probs[:, list(g)].sum(axis=1) for g in groups], axis=1)
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / len(groups))


class TorchClassifierAdapter:
    """Any nn.Module classifier: softmax of its logits (grouped into the dataset's classes when a label mapping is
    given), hidden layer by module name via a forward hook."""

    def __init__(self, model, hidden_layer: Optional[str] = None, transform: Optional[Callable[[Sequence[Any]], Any]] = None,
                 device: str = "cpu", class_groups: Optional[Sequence[Sequence[int]]] = None):
        self.model = model.to(device).eval()  # the registry's small nets run in float32
        self.default_hidden_layer = hidden_layer
        self.transform = transform
        self.device = device
        self.class_groups = class_groups

    def predict(self, batch: Sequence[Any], hidden_layer: Optional[str] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Softmax probabilities (B, C) and the hidden layer's flattened output (B, H) or None."""
        import torch

        x = self.transform(batch) if self.transform else torch.stack([_to_image_tensor(b) for b in batch])
        with torch.no_grad(), capture_output(self.model, hidden_layer) as store:
            logits = self.model(x.to(self.device))
        logits = getattr(logits, "logits", logits)
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        if self.class_groups is not None:
            probs = grouped_probs(probs, self.class_groups)
        return probs, store.get("value")


def _yes_no_ids(label2id: dict) -> tuple[int, int]:
    """Ids of the 'yes' and 'no' answers in a label2id map; one-line error if missing."""
    lower = {str(k).strip().lower(): int(v) for k, v in label2id.items()}
    if "yes" not in lower or "no" not in lower:
        raise EdgesimError(f"model config label2id lacks 'yes'/'no' answers (has {len(lower)} labels, e.g. {list(lower)[:5]})")
    return lower["yes"], lower["no"]


class ViltYesNoAdapter:
    """000's small model: ViltForQuestionAnswering; P(fall) from the 'yes'/'no' logits, hidden = classifier.2 (2*hidden wide)."""

    HIDDEN_LAYER = "classifier.2"  # Linear(h, 2h) -> LayerNorm -> GELU: the last hidden layer, 1536 wide for ViLT-B

    def __init__(self, model, tokenizer: Optional[Callable] = None, question: str = DEFAULT_QUESTION,
                 image_size: Optional[int] = None, question_ids: Optional[Sequence[int]] = None, device: str = "cpu",
                 dtype: str = "float32", processor=None):
        from transformers import ViltImageProcessor

        self.dtype = torch_dtype(dtype)
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.question = question
        self.device = device
        cfg = model.config
        self.image_size = int(image_size or getattr(cfg, "image_size", 384))
        # dandelin/vilt-b32-finetuned-vqa's preprocessor_config: shortest edge 384, size_divisor 32, mean = std = 0.5
        self.processor = processor or ViltImageProcessor(size={"shortest_edge": self.image_size})
        self.yes_id, self.no_id = _yes_no_ids(cfg.label2id)
        self.default_hidden_layer = self.HIDDEN_LAYER
        if question_ids is None and tokenizer is None:
            raise EdgesimError("ViLT adapter needs a tokenizer or question_ids for the prompt")
        self.question_ids = list(question_ids) if question_ids is not None else None

    @classmethod
    def from_pretrained(cls, path: str, question: str = DEFAULT_QUESTION, **kw) -> "ViltYesNoAdapter":
        """Load model and tokenizer from a local folder or cached hub id (local_files_only=True)."""
        from transformers import AutoTokenizer, ViltForQuestionAnswering, ViltImageProcessor

        try:
            model = ViltForQuestionAnswering.from_pretrained(path, **load_kwargs(kw.get("dtype", "float32")))
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:  # ValueError: huggingface_hub's HFValidationError for a bad path
            raise EdgesimError(f"ViLT checkpoint '{path}': not found locally ({str(exc).splitlines()[0]})") from None
        try:  # the checkpoint's own preprocessor_config.json when it has one
            kw.setdefault("processor", ViltImageProcessor.from_pretrained(path, local_files_only=True))
        except OSError:
            pass
        return cls(model, tok, question=question, **kw)

    def _text(self, n: int):
        """input_ids and attention_mask for n copies of the question."""
        import torch

        if self.question_ids is not None:
            ids = torch.tensor([self.question_ids] * n, dtype=torch.long)
            return ids, torch.ones_like(ids)
        enc = self.tokenizer([self.question] * n, return_tensors="pt", padding=True)
        return enc["input_ids"], enc["attention_mask"]

    def pixels(self, batch: Sequence[Any]):
        """pixel_values and pixel_mask as ViltImageProcessor makes them (aspect kept, padded to the batch's largest)."""
        enc = self.processor([_to_pil(item) for item in batch], return_tensors="pt")
        return enc["pixel_values"], enc["pixel_mask"]

    def predict(self, batch: Sequence[Any], hidden_layer: Optional[str] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Probabilities [P(no), P(yes)] (softmax over the two answer logits) and the hooked hidden layer."""
        import torch

        pixels, pixel_mask = self.pixels(batch)
        ids, mask = self._text(len(batch))
        with torch.no_grad(), capture_output(self.model, hidden_layer) as store:
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                             pixel_values=pixels.to(self.device, self.dtype), pixel_mask=pixel_mask.to(self.device))
        two = out.logits[:, [self.no_id, self.yes_id]].float()
        return torch.softmax(two, dim=-1).cpu().numpy(), store.get("value")


_YES = re.compile(r"^\W*(yes|yeah|true)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(no|not|false)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> Optional[int]:
    """1 for an answer starting with yes, 0 for one starting with no, None when neither."""
    if _YES.search(text or ""):
        return 1
    if _NO.search(text or ""):
        return 0
    return None


LLAVA_PROMPT = "USER: <video>\n{question} Answer yes or no. ASSISTANT:"
"""The prompt the LLaVA-NeXT-Video adapter sends (LLaVA's USER/ASSISTANT chat format, one video placeholder)."""


def llava_prompt_ids(tokenizer, template: str, question: str, video_token_id: int, n_video: int) -> list[int]:
    """Prompt token ids with the single <video> placeholder expanded to n_video copies (what the processor does)."""
    ids = list(tokenizer(template.format(question=question), add_special_tokens=True)["input_ids"])
    if video_token_id not in ids:
        raise EdgesimError("LLaVA-NeXT-Video prompt template has no <video> token the tokenizer knows")
    at = ids.index(video_token_id)
    return ids[:at] + [video_token_id] * n_video + ids[at + 1:]


def llava_video_token_id(cfg) -> int:
    """The <video> placeholder's token id of a LlavaNextVideoConfig (named video_token_id or video_token_index)."""
    return int(cfg.video_token_id if getattr(cfg, "video_token_id", None) is not None else cfg.video_token_index)


class LlavaNextVideoYesNoAdapter:
    """000's large model: LLaVA-NeXT-Video; a short generated answer parsed as yes/no (single-frame video, 000 section 4).

    Probabilities come from the first generated step: P(yes) and P(no) each sum the softmax over every spelling
    of the answer's first token ('yes', 'Yes', ' yes', ' Yes', ...), then are normalised to sum to 1. The
    prediction is the parsed text, or those probabilities when the text is neither yes nor no (counted in
    `unparsed`, out of `answered`).
    """

    def __init__(self, model, tokenizer, question: str = DEFAULT_QUESTION, prompt_template: str = LLAVA_PROMPT,
                 max_new_tokens: int = 4, image_size: Optional[int] = None, num_frames: int = 1, device: str = "cpu",
                 dtype: str = "float32"):
        self.dtype = torch_dtype(dtype)
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.question = question
        self.prompt_template = prompt_template
        self.max_new_tokens = int(max_new_tokens)
        self.num_frames = int(num_frames)
        self.device = device
        cfg = model.config
        self.image_size = int(image_size or cfg.vision_config.image_size)
        self.video_token_id = llava_video_token_id(cfg)
        self.yes_tokens = self._token_ids("yes")
        self.no_tokens = self._token_ids("no")
        self.default_hidden_layer = None
        self.unparsed = 0
        self.answered = 0
        self._n_video_tokens: Optional[int] = None

    @classmethod
    def from_pretrained(cls, path: str, question: str = DEFAULT_QUESTION, **kw) -> "LlavaNextVideoYesNoAdapter":
        """Load model and tokenizer from a local folder or cached hub id (local_files_only=True)."""
        from transformers import AutoTokenizer, LlavaNextVideoForConditionalGeneration

        try:
            model = LlavaNextVideoForConditionalGeneration.from_pretrained(path, **load_kwargs(kw.get("dtype", "float32")))
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EdgesimError(f"LLaVA-NeXT-Video checkpoint '{path}': not found locally ({str(exc).splitlines()[0]})") from None
        return cls(model, tok, question=question, **kw)

    def _token_ids(self, word: str) -> list[int]:
        """First token ids of every spelling of a word: lower case and capitalised, with and without a leading space."""
        found: list[int] = []
        unk = getattr(self.tokenizer, "unk_token_id", None)
        for w in (word, word.capitalize(), " " + word, " " + word.capitalize(), word.upper()):
            ids = self.tokenizer(w, add_special_tokens=False)["input_ids"]
            if ids and ids[0] != unk and ids[0] not in found:
                if self.tokenizer.decode([ids[0]]).strip().lower() == word:  # the token is the whole word
                    found.append(int(ids[0]))
        if not found:
            raise EdgesimError(f"tokenizer has no token for '{word}' (tried {word}, {word.capitalize()}, with a leading space)")
        return found

    def _video_tokens(self, pixels) -> int:
        """Number of video placeholder tokens the vision tower produces for one clip (measured once)."""
        import torch

        if self._n_video_tokens is None:
            cfg = self.model.config
            with torch.no_grad():
                # positional: named pixel_values before transformers 4.5x, pixel_values_videos after
                feats = self.model.model.get_video_features(pixels[:1].to(self.device, self.dtype), vision_feature_layer=cfg.vision_feature_layer,
                                                            vision_feature_select_strategy=cfg.vision_feature_select_strategy)
            feats = getattr(feats, "pooler_output", feats)
            if isinstance(feats, (tuple, list)):  # transformers 4.5x: one (frames, tokens, dim) tensor per clip
                self._n_video_tokens = int(feats[0].shape[0] * feats[0].shape[1])
            else:
                self._n_video_tokens = int(feats.shape[1])
        return self._n_video_tokens

    def _prompt_ids(self, n_video: int) -> list[int]:
        """Prompt token ids with the single <video> placeholder expanded to n_video copies (what the processor does)."""
        return llava_prompt_ids(self.tokenizer, self.prompt_template, self.question, self.video_token_id, n_video)

    def predict(self, batch: Sequence[Any], hidden_layer: Optional[str] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """[P(no), P(yes)] per image: generate an answer, parse yes/no, probabilities from the first step's logits."""
        import torch

        cfg = self.model.config
        mean = getattr(cfg, "image_mean", None) or [0.48145466, 0.4578275, 0.40821073]  # CLIP normalisation
        std = getattr(cfg, "image_std", None) or [0.26862954, 0.26130258, 0.27577711]
        frames = preprocess_images(batch, (self.image_size, self.image_size), mean, std)
        pixels = frames.unsqueeze(1).expand(-1, self.num_frames, -1, -1, -1).contiguous()
        ids = torch.tensor([self._prompt_ids(self._video_tokens(pixels))] * len(batch), dtype=torch.long)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=torch.ones_like(ids).to(self.device),
                                      pixel_values_videos=pixels.to(self.device, self.dtype), max_new_tokens=self.max_new_tokens,
                                      do_sample=False, output_scores=True, return_dict_in_generate=True,
                                      pad_token_id=self.tokenizer.pad_token_id)
        probs = yes_no_probs(out.scores[0], self.yes_tokens, self.no_tokens)
        texts = self.tokenizer.batch_decode(out.sequences[:, ids.shape[1]:], skip_special_tokens=True)
        probs, unparsed = text_decides(probs, texts)
        self.unparsed += unparsed
        self.answered += len(texts)
        return probs, None


def yes_no_probs(first_step_logits, yes_ids: Sequence[int], no_ids: Sequence[int]) -> np.ndarray:
    """[P(no), P(yes)] per row: softmax over the vocabulary, summed over each answer's spellings, normalised."""
    import torch

    p = torch.softmax(first_step_logits.float(), dim=-1)
    yes = p[:, list(yes_ids)].sum(dim=-1)
    no = p[:, list(no_ids)].sum(dim=-1)
    total = (yes + no).clamp_min(1e-30)
    return torch.stack([no / total, yes / total], dim=-1).cpu().numpy()


def text_decides(probs: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, int]:
    """The parsed answer decides the prediction: where it disagrees with the probabilities, they are swapped (the
    probability stays the confidence of that answer); unparsable answers keep the probabilities and are counted."""
    probs = np.array(probs, copy=True)
    unparsed = 0
    for i, text in enumerate(texts):
        parsed = parse_yes_no(text)
        if parsed is None:
            unparsed += 1
        elif int(np.argmax(probs[i])) != parsed:
            probs[i] = probs[i][::-1]
    return probs, unparsed
