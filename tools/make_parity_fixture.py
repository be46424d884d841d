"""Records the official MAGANet PyTorch code's outputs on a small model into tests/fixtures/maganet_parity.npz.

    pip install torch numpy scipy
    git clone https://github.com/GIST-IRR/CartanFM && git -C CartanFM checkout 122bf9c
    python tools/make_parity_fixture.py --official=CartanFM [--out=tests/fixtures/maganet_parity.npz]

The model is small: 64×64×1 images, d = 10, L = 2 levels of K = 2 steps, hidden 16, additive
couplings, plain 1×1 convs. It is built as the official main.py builds it (MAGANet(config),
init_weights()), its ActNorms are initialised by one training-mode forward pass on the batch, and
then every random number the official forward pass draws is fixed: `torch.randperm` returns
recorded permutations and `Encoder.reparameterize` uses recorded noise, so magajax can repeat the
same computation. The file holds (B = 8, d = 10):

  state/KEY               the state_dict after the ActNorm initialisation
  images                  (B, 64, 64, 1) binary images of simple shapes (NHWC)
  perm                    (B,) the pair permutation: pair i is (pivot images[perm[i]], varying images[i])
  latent_perm             (B,) the latent term's permutation (the sum it enters does not depend on it)
  noise_pivot, noise_varying, noise_self, noise_reencoded
                          (B, d) the ε of the four encoder calls, indexed by image in the batch's
                          original order: the pivot's, the varying image's, the latent term's
                          re-encoding of x and of its decode
  mean, logvar            (B, d) the posterior of each image
  codes                   (B, d) z = z_varying − z_pivot, per pair
  flow                    (B, 16, 16, 16) f(images), NHWC, channels in the official order
  decodes                 (B, 64, 64, 1) sigmoid(Decoder(codes, images[perm]))
  reconst, kld, latent, total
                          the official loss terms (total = reconst + 300·kld + 300·latent)
  lu_state/KEY            the 1×1 convs of the same model built with LU_decomposed (p, sign_s,
                          lower, log_s, upper); every other parameter is state/KEY's
  lu_flow, lu_decodes     f(images) and the decodes of that model
  train_*                 3 training steps as the official train loop takes them (Adam 1e-3,
                          betas (0.9, 0.999), clip_grad_norm 1.0, β_KL 300, β_lat 300) on `images`:
                          train_perm, train_latent_perm (3, B), train_noise_* (3, B, d),
                          train_reconst, train_kld, train_latent, train_total (3,) the terms each
                          step trained on; train_norm_names (P,), train_norms and train_moved (P, 3):
                          the norm of every parameter after each step and of its change since the start.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch

SIZE, LATENT, LEVELS, STEPS, HIDDEN, BATCH = 64, 10, 2, 2, 16, 8
BETA_KL, BETA_LAT, LR, CLIP, TRAIN_STEPS = 300.0, 300.0, 1e-3, 1.0, 3
NOISE = ("pivot", "varying", "self", "reencoded")


def shapes(batch: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, size, size, 1) binary images: squares, discs and triangles at random places and sizes."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    images = np.zeros((batch, size, size, 1), np.float32)
    for b in range(batch):
        r = rng.uniform(5, 12)
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        kind = b % 3
        if kind == 0:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        elif kind == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        else:
            mask = (yy >= cy - r) & (yy <= cy + r) & (np.abs(xx - cx) <= (yy - cy + r) / 2)
        images[b, ..., 0] = mask
    return images


def official_config(lu: bool) -> types.SimpleNamespace:
    """The fields the official MAGANetConfig passes to MAGANet."""
    return types.SimpleNamespace(
        latent_dim=LATENT, in_channel=1, flow_coupling="additive", hidden_channels=HIDDEN, LU_decomposed=lu,
        K=STEPS, L=LEVELS, image_shape=(1, SIZE, SIZE), actnorm_scale=1.0, flow_permutation="invconv",
    )


class Recorded:
    """Replaces torch.randperm and Encoder.reparameterize with recorded values, in call order.

    One official forward pass calls randperm twice (pairs, then the latent term) and the encoder
    four times (pivots x[perm], varying x, x[latent_perm], decodes of x[latent_perm]); noise is
    given per image in the batch's original order and permuted here as each call sees it.
    """

    def __init__(self, encoder_cls: type) -> None:
        self.encoder_cls = encoder_cls
        self.perms: list[np.ndarray] = []
        self.eps: list[np.ndarray] = []

    def load(self, perm: np.ndarray, latent_perm: np.ndarray, noise: dict[str, np.ndarray]) -> None:
        self.perms = [perm, latent_perm]
        self.eps = [noise["pivot"][perm], noise["varying"], noise["self"][latent_perm],
                    noise["reencoded"][latent_perm]]

    def __enter__(self) -> Recorded:
        self.randperm, self.reparameterize = torch.randperm, self.encoder_cls.reparameterize
        torch.randperm = lambda n, *a, **k: torch.from_numpy(self.perms.pop(0).astype(np.int64))
        self.encoder_cls.reparameterize = lambda _, mu, logvar: mu + torch.exp(0.5 * logvar) * torch.from_numpy(
            self.eps.pop(0))
        return self

    def __exit__(self, *exc) -> None:
        torch.randperm, self.encoder_cls.reparameterize = self.randperm, self.reparameterize
        assert not self.perms and not self.eps, "the official forward drew fewer random numbers than recorded"


def draws(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    noise = {k: rng.standard_normal((BATCH, LATENT)).astype(np.float32) for k in NOISE}
    return rng.permutation(BATCH), rng.permutation(BATCH), noise


def terms(outputs: tuple) -> dict[str, torch.Tensor]:
    obj = outputs[0]["obj"]
    total = obj["reconst"] + BETA_KL * obj["kld"] + BETA_LAT * obj["latent_recon_loss"]
    return {"reconst": obj["reconst"], "kld": obj["kld"], "latent": obj["latent_recon_loss"], "total": total}


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy().astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="a checkout of github.com/GIST-IRR/CartanFM at 122bf9c")
    parser.add_argument("--out", default="tests/fixtures/maganet_parity.npz")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from models.maganet import MAGANet
    from models.maganetmodule import Encoder

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    images = shapes(BATCH, SIZE, rng)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    recorded = Recorded(Encoder)
    out: dict[str, np.ndarray] = {"images": images}

    model = MAGANet(official_config(lu=False))
    model.init_weights()
    model.train()
    with torch.no_grad(), recorded:  # the first training-mode pass initialises every ActNorm
        recorded.load(*draws(rng))
        model(x, loss_fn)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out |= {f"state/{k}": v.numpy() for k, v in state.items()}

    perm, latent_perm, noise = draws(rng)
    out |= {"perm": perm, "latent_perm": latent_perm} | {f"noise_{k}": v for k, v in noise.items()}
    with torch.no_grad(), recorded:
        recorded.load(perm, latent_perm, noise)
        outputs = model(x, loss_fn)
    out |= {k: v.numpy() for k, v in terms(outputs).items()}
    with torch.no_grad():
        _, mean, logvar = model.encoder(x)
        out |= {"mean": mean.numpy(), "logvar": logvar.numpy()}
        t = torch.from_numpy
        codes = (mean + torch.exp(0.5 * logvar) * t(noise["varying"])) - (
            mean[perm] + torch.exp(0.5 * logvar[perm]) * t(noise["pivot"][perm]))
        out["codes"] = codes.numpy()
        out["flow"] = nhwc(model.decoder.flow(x)[0])
        out["decodes"] = nhwc(torch.sigmoid(outputs[1]))
        assert torch.allclose(outputs[1], model.decoder(codes, x[perm]), atol=1e-5), "codes differ from the forward's"

    lu = MAGANet(official_config(lu=True))
    lu_keys = {k for k in lu.state_dict() if ".invconv." in k}
    lu.load_state_dict({k: v for k, v in state.items() if ".invconv." not in k} | {k: lu.state_dict()[k]
                                                                                   for k in lu_keys})
    lu.eval()  # marks the copied ActNorms initialised
    with torch.no_grad():
        out |= {f"lu_state/{k}": lu.state_dict()[k].numpy() for k in sorted(lu_keys)}
        out["lu_flow"] = nhwc(lu.decoder.flow(x)[0])
        out["lu_decodes"] = nhwc(torch.sigmoid(lu.decoder(codes, x[perm])))

    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), weight_decay=0.0)
    names = [k for k, _ in model.named_parameters()]
    start = [p.detach().clone() for p in model.parameters()]
    steps: dict[str, list[np.ndarray]] = {}
    for _ in range(TRAIN_STEPS):
        perm, latent_perm, noise = draws(rng)
        with recorded:
            recorded.load(perm, latent_perm, noise)
            loss = terms(model(x, loss_fn))
        loss["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        model.zero_grad()
        record = {"perm": perm, "latent_perm": latent_perm} | {f"noise_{k}": v for k, v in noise.items()}
        record |= {k: v.detach().numpy() for k, v in loss.items()}
        record["norms"] = np.array([float(p.detach().norm()) for p in model.parameters()])
        record["moved"] = np.array([float((p.detach() - p0).norm()) for p, p0 in zip(model.parameters(), start)])
        for k, v in record.items():
            steps.setdefault(k, []).append(v)
    out |= {f"train_{k}": np.stack(v) for k, v in steps.items()}
    out["train_norms"], out["train_moved"] = out["train_norms"].T, out["train_moved"].T
    out["train_norm_names"] = np.array(names)

    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in out.items()})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(out)} arrays)")


if __name__ == "__main__":
    main()
