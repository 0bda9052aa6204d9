"""makemore: character-level language models of names, from counting to a WaveNet-like tree.

The task: given the characters of a name so far, predict the next one (``'.'`` ends a name).
A model is judged by the average negative log-likelihood it gives the true next characters
of names it has not seen (the val split); sampling from it "makes more" names.

The chapters, in order, and the code that shows each:

1. :mod:`.bigram` — count pairs of characters (NLL 2.4540 on the whole dataset), then get
   the same model from a one-layer neural net trained by gradient descent.
2. :class:`.models.MLP` — Bengio et al. 2003: embeddings of the last 3 characters, a tanh
   hidden layer; trained with minibatch SGD (:mod:`.train`).
3. :func:`.models.mlp_bn` + :mod:`.diagnostics` — initialisation (why the first loss should
   be ln 27, why tanh must not saturate, Kaiming scaling), BatchNorm, and the plots that show
   whether a network is healthy: activation/gradient histograms, update-to-data ratios.
4. :mod:`.backprop` — the backward pass of the MLP with BatchNorm by hand, tensor by
   tensor, checked against autograd.
5. :func:`.models.wavenet` with :mod:`.layers` — fuse characters two at a time in a tree;
   :class:`.layers.BatchNorm1d` normalises 3-D input over both batch and position.

``python -m llmpy.makemore --model bigram-counts|bigram-nn|mlp|mlp-bn|wavenet|backprop``
trains one and prints losses and samples (``--help`` for options).

>>> from llmpy.makemore import Vocab, build_dataset
>>> X, Y = build_dataset(["ava"], block_size=2, vocab=Vocab.from_words(["ava"]))
>>> X.tolist(), Y.tolist()
([[0, 0], [0, 1], [1, 2], [2, 1]], [1, 2, 1, 0])
"""

from importlib.util import find_spec

from ..extras import missing_names

if find_spec("torch") is not None:
    from .bigram import BigramCounts, BigramNN, bigram_counts, bigram_nll
    from .data import Splits, Vocab, build_dataset, fetch_names, load_words, names_path, split_words
    from .layers import BatchNorm1d, Embedding, FlattenConsecutive, Linear, Sequential, Tanh
    from .models import MLP, mlp_bn, wavenet
    from .train import LECTURE_SCHEDULES, Schedule, evaluate, sample, train
else:  # without torch the package still imports (`python -m llmpy.makemore --help` works); its
    # names say in one line which extra brings torch
    __getattr__ = missing_names(__name__, "torch", "chapters")

__all__ = [
    "LECTURE_SCHEDULES",
    "MLP",
    "BatchNorm1d",
    "BigramCounts",
    "BigramNN",
    "Embedding",
    "FlattenConsecutive",
    "Linear",
    "Schedule",
    "Sequential",
    "Splits",
    "Tanh",
    "Vocab",
    "bigram_counts",
    "bigram_nll",
    "build_dataset",
    "evaluate",
    "fetch_names",
    "load_words",
    "mlp_bn",
    "names_path",
    "sample",
    "split_words",
    "train",
    "wavenet",
]
