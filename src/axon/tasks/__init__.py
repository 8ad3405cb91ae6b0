"""Tasks: what a run trains on and how it is scored.

A task turns a config into the pieces the trainer needs, for any model family:

    data (corpus, labelled file, sentence pairs, ...) --> train / val datasets of batches
    tokenizer                                          --> saved into the run directory
    objective                                          --> (model, batch) -> (loss, parts)
    sample_fn, summarize                               --> samples.txt, extra result metrics

A config names its task (``task: lm``); without one, the model family's own task is used
(``Family.task``). One module per task, each with its builder, sampler and metrics; the data
they read (files, tokenizers, datasets of batches) is ``axon.data``'s:

    lm        next-token prediction on a token stream (the bundled corpus or a prepared directory)
    mlm       BERT's masked-LM pretraining on a token stream
    classify  one label per text (JSONL / TSV), for every classifier family; fine-tuning a
              pretrained encoder under a new head is ``axon.tasks.finetune``
    seq2seq   sentence pairs for encoder-decoder models, scored by BLEU / chrF / exact match
    tag       one tag per word (BIO NER) from CoNLL files: a BiLSTM (optionally with a CRF) or BERT
              (first sub-token of each word); entity precision / recall / F1 by seqeval
    word2vec  skip-gram / CBOW examples with negatives from any text
    glove     GloVe's weighted least squares on sampled nonzero co-occurrence counts of any text
    fasttext  word2vec's skip-gram examples with each centre word read as its character n-grams
    sft       supervised fine-tuning of a causal LM on prompt/response pairs and chats, the loss on
              the responses only (InstructGPT's first step)
    reward    a scalar reward from preference comparisons or rankings (InstructGPT's step 2),
              optionally with one learnt reliability per labeller
    ppo       PPO of a policy with a value head against a reward (gold judges or a reward run),
              with a KL penalty to the SFT model (InstructGPT's third step)
    dpo       a causal LM trained directly on comparisons against a frozen copy of itself (DPO,
              IPO, cDPO, robust DPO, SimPO, RPO), no reward model and no sampling
    grpo      GRPO or RLOO of a policy without a value function against a reward: groups of answers
              to each prompt, each answer's baseline the others (DeepSeekMath; Ahmadian et al. 2024)
    online_dpo
              the dpo losses on pairs the current policy samples at each step and a reward labels
              (online DPO, Guo et al. 2024); iterated DPO's rounds are ``axon.lab.iterated_dpo``
    diffusion a denoiser (unet, mlp_denoiser) trained to undo Gaussian noise, sampled by DDPM or
              DDIM with classifier-free guidance (Ho et al. 2020; Song et al. 2021)
    image_classify
              one label per image (the digits, or a folder per class) for the image families
              (resnet, ...), with crop/flip augmentation; accuracy and top-k
    detect    boxes and classes of the objects in an image (generated shapes, or a COCO-format
              file) for DETR: Hungarian matching and the set loss; COCO mAP
    vq        a VQ-VAE image tokenizer (vqvae): images -> a grid of codebook indices -> images;
              reconstruction error and codebook usage
    mixed_modal
              images and captions both ways: early fusion (a VQ run's codes as tokens of any causal
              LM, modality-aware sampling; Chameleon) or late fusion (family late_fusion: a ViT's
              vectors as the decoder's prefix; MM1); caption and drawn-digit accuracy
    dpr       DPR's question and passage encoders (family dpr) trained with in-batch and BM25 hard
              negatives on a passage collection; top-1/5/20 retrieval accuracy against BM25
    rag       a reader answering questions from retrieved passages (a causal LM reading them
              concatenated, or seq2seq fusing them in its decoder, FiD), or closed-book; exact match
    wm_vae, wm_mdn, wm_controller
              World Models (axon.agents.worldmodels): V, a convolutional VAE of Chase frames; M, an
              MDN-RNN over (z, action); C, a linear controller on [z, h] by CMA-ES, in M's dream or
              the real environment
    mappo     cooperative multi-agent PPO (family marl): a shared actor and a centralised critic over
              all agents' observations (MAPPO), or local critics (independent PPO), on the cover grid or
              mpe2's simple_spread; mean episode return against environment steps, a rollout GIF
    gato      a Gato-style generalist: a decoder over tokenised expert episodes of several
              environments and text, evaluated by return, prompted with a demonstration

A new task is a module here with a ``(cfg, device) -> TaskSetup`` builder, a line in ``TASKS``,
and the families that run it listing it (``Family.task`` / ``other_tasks`` in ``axon.models``):
docs/adding-a-task.md walks through one.
"""

from __future__ import annotations

import copy

import torch

from axon.errors import ConfigError
from axon.tasks import (
    classify,
    detect,
    diffusion,
    dpr,
    dpo,
    fasttext,
    gato,
    glove,
    grpo,
    image_classify,
    lm,
    mappo,
    mixed_modal,
    mlm,
    online_dpo,
    ppo,
    rag,
    reward,
    seq2seq,
    sft,
    tag,
    vq,
    word2vec,
)
from axon.agents.worldmodels import tasks as worldmodels_tasks
from axon.tasks.base import TaskBuilder, TaskSetup, set_vocab_size

TASKS: dict[str, TaskBuilder] = {
    "lm": lm.lm_task,
    "mlm": mlm.mlm_task,
    "classify": classify.classify_task,
    "seq2seq": seq2seq.seq2seq_task,
    "word2vec": word2vec.word2vec_task,
    "glove": glove.glove_task,
    "fasttext": fasttext.fasttext_task,
    "tag": tag.tag_task,
    "sft": sft.sft_task,
    "reward": reward.reward_task,
    "ppo": ppo.ppo_task,
    "dpo": dpo.dpo_task,
    "grpo": grpo.grpo_task,
    "online_dpo": online_dpo.online_dpo_task,
    "diffusion": diffusion.diffusion_task,
    "image_classify": image_classify.image_classify_task,
    "detect": detect.detect_task,
    "vq": vq.vq_task,
    "mixed_modal": mixed_modal.mixed_modal_task,
    "dpr": dpr.dpr_task,
    "rag": rag.rag_task,
    "wm_vae": worldmodels_tasks.wm_vae_task,  # World Models' V, M and C (axon.agents.worldmodels)
    "wm_mdn": worldmodels_tasks.wm_mdn_task,
    "wm_controller": worldmodels_tasks.wm_controller_task,
    "mappo": mappo.mappo_task,
    "gato": gato.gato_task,
}

#: Tasks whose runs answer a user in the chat template (axon sample wraps the prompt in it; axon label samples them).
CHAT_TASKS = ("sft", "ppo", "grpo", "dpo", "online_dpo")


def task_name(cfg) -> str:
    return cfg.task or served_tasks(cfg)[0]


def served_tasks(cfg) -> tuple[str, ...]:
    """The tasks the run's model serves, its default first: the family's, or those its config
    narrows them to (``model.tasks``: a routed vision model's experts classify or detect)."""
    from axon.models import FAMILIES

    family = FAMILIES[cfg.model.family]
    return getattr(cfg.model, "tasks", None) or (family.task, *family.other_tasks)


def build_task(cfg, device: torch.device) -> TaskSetup:
    name = task_name(cfg)
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    from axon.models import FAMILIES

    served = served_tasks(cfg)
    if name not in served:
        doers = [f for f, fam in FAMILIES.items() if name in (fam.task, *fam.other_tasks)]
        raise ConfigError(f"task: a {cfg.model.family} model does not do {name!r} (it does {', '.join(served)}); "
                          f"for {name} set " + " or ".join(f"model.family={f}" for f in doers))
    return TASKS[name](cfg, device)


def resolve_vocab(run_cfg):
    """A copy of the run config with what its task fills in when it is null -- ``model.vocab_size``
    from the tokenizer, ``model.num_labels`` from an image task's data -- filled as training fills
    it, so that FLOPs and parameters can be counted before the run (``axon.models.flops``)."""
    cfg = copy.deepcopy(run_cfg)
    vocab_missing = getattr(cfg.model, "vocab_size", 0) is None
    if vocab_missing or getattr(cfg.model, "num_labels", 0) is None or getattr(cfg.model, "obs_dim", 0) is None:
        build_task(cfg, torch.device("cpu"))  # fills them (set_vocab_size; the image tasks' fill_num_labels; mappo's env)
        if vocab_missing and cfg.model.vocab_size is None:
            raise ConfigError(f"task of model.family={cfg.model.family} did not set model.vocab_size")
    return cfg


__all__ = ["TASKS", "TaskBuilder", "TaskSetup", "build_task", "resolve_vocab", "set_vocab_size", "task_name"]
