"""The options that name a PyTorch model, declared once for every verb that takes a model
(``sigprop.diagnose``, ``sigprop.critical_init`` …; ``sigprop.ModelSource.of`` reads them) and
for the command line's flags (``--hf``, ``--net``, ``--layers`` …)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelOption:
    """One keyword option that names a model, declared once: its name (``flag`` on the command
    line), type and meaning."""

    name: str
    kind: type
    meaning: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


MODEL_OPTIONS = (
    ModelOption("hf", str, "a Hugging Face family built from its config (random init, nothing "
                           "downloaded): gpt2, bert, llama"),
    ModelOption("net", str, "one of sigprop's networks of other families, randomly initialized: "
                            "resnet18 (torchvision's ResNet-18), lstm, gru, rnn (unrolled over "
                            "--layers steps), gcn (on a random graph of --n-tokens nodes)"),
    ModelOption("family", str, "what tokens and layers are (detected if omitted): transformer "
                               "(tokens, blocks), convolutional (spatial positions, residual "
                               "blocks), recurrent (initial states, time steps), graph (nodes, "
                               "message-passing layers)"),
    ModelOption("layers", int, "depth of an --hf model (default 24) or --net gcn (default 24); "
                               "time steps T of a recurrent network (default 64)"),
    ModelOption("width", int, "width d of an --hf model (default 256), base channels of --net "
                              "resnet18 (default 64), hidden size of --net lstm|gru|rnn and "
                              "width of --net gcn (default 128); for your model, its hidden "
                              "size (checked)"),
    ModelOption("heads", int, "attention heads of an --hf model (default width // 64)"),
    ModelOption("blocks", str, "dotted path of the model's block list (found automatically if "
                               "omitted)"),
    ModelOption("vocab_size", int, "your model takes token ids in [0, V): it is driven by random "
                                   "ids (Hugging Face models say so in their config)"),
    ModelOption("image_size", int, "input resolution of a convolutional network (default 64: "
                                   "ResNet-18's last stage keeps 2×2 positions)"),
)
"""The options that name a model besides the model itself, for every verb that takes one;
``run(model, n_tokens, seed)`` (Python only) drives the model instead of the default inputs."""
