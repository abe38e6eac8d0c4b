#!/usr/bin/env python3
"""DDRM and MCGdiff as the original MCGdiff GMM script runs them, on instances made as that
script makes them.

Writes, for every instance, `OUT/NAME.json` (the instance: mixture weights, A, sigma_y, y, x*,
the step budget, the script's adapted timesteps), `OUT/NAME.ddrm.f32` and `OUT/NAME.mcgdiff.f32`
(the script's DDRM and MCGdiff samples, little-endian float32, row-major [samples, d]).
`cargo run --release -p dipbench --example gmm_script_compare -- OUT` then runs dipbench's
samplers on the same instances and scores every sample set with the same metric against the same
exact posterior draws (docs/gmm.md).

Needs PyTorch and a checkout of Badr-MOUFAD/dcps (the original script's repository):

    python scripts/gmm_script_ddrm.py --dcps PATH/TO/dcps --out OUT [--dim 80] [--dim-y 1 2 4]
        [--budget 20] [--replicates 20] [--samples 2000]

The script's own RNG order is kept where it defines the instance: `manual_seed(seed)` with its
seed formula (2**i_dim)*(3**i_dy)*(5**i_budget) + i over dims (800, 80, 8), d_y (1, 2, 4) and
budgets (20, 100), then A0 = randn, s = sorted rand, x* = mixture sample, sigma_y = rand*max(s),
noise (the script retries with seed + 1 when building its posterior raises ValueError; this
script does not build the posterior — dipbench computes it — so it keeps every seed's first
draw). The mixture weights come from `manual_seed(6)` (the script draws them from whatever state
its loop left; the golden GMM fixture uses seed 6 too). DDRM then draws its own noise from the
torch stream after the instance, as in the script (which draws VI and DPS samples first: the
draws differ, the distribution does not).
"""
import argparse
import json
import os
import sys
import types


def stub_modules():
    """The DDRM and ipwdp modules import tqdm, torchvision and scipy for things not used here."""
    class Quiet:
        def __init__(self, it=None, *a, **k):
            self.it = it

        def __iter__(self):
            return iter(self.it)

        def __getattr__(self, name):
            return lambda *a, **k: None

    tq = types.ModuleType("tqdm")
    tq.tqdm = Quiet
    tq.trange = lambda *a, **k: Quiet(range(*a))
    sys.modules["tqdm"] = tq
    tv, tvu = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    tv.utils = tvu
    sys.modules["torchvision"], sys.modules["torchvision.utils"] = tv, tvu
    sc, st = types.ModuleType("scipy"), types.ModuleType("scipy.stats")
    st.wasserstein_distance = None
    sc.stats = st
    sys.modules["scipy"], sys.modules["scipy.stats"] = sc, st


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dcps", required=True, help="checkout of Badr-MOUFAD/dcps")
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, default=80)
    p.add_argument("--dim-y", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--budget", type=int, default=20, choices=[20, 100])
    p.add_argument("--replicates", type=int, default=20)
    p.add_argument("--samples", type=int, default=2000, help="a multiple of 1000 (MCGdiff's clouds)")
    p.add_argument("--noise-seed", type=int, default=None,
                   help="reseed torch after making each instance (manual_seed(1000*seed + N)): an independent run of the "
                        "samplers on the same instances; by default their noise follows the instance's draws as in the script")
    args = p.parse_args()

    stub_modules()
    sys.path.insert(0, os.path.join(args.dcps, "src"))
    import io
    import contextlib
    import torch
    from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal
    from ddrm.functions.denoising import efficient_generalized_steps_w_grad
    from ddrm.functions.svd_replacement import GeneralH
    from inverse_problem_with_diffusion_prior.ipwdp.generative_models import ScoreModel
    from inverse_problem_with_diffusion_prior.ipwdp.inverse_problems_utils import (
        NetReparametrized, build_extended_svd, get_optimal_timesteps_from_singular_values)
    from inverse_problem_with_diffusion_prior.ipwdp.nn_utils import EpsilonNetFromScore, Expandednet
    from inverse_problem_with_diffusion_prior.ipwdp.optimal_particle_filter import particle_filter

    d, n = args.dim, args.samples
    eta = {20: 0.6, 100: 0.85}[args.budget]
    i_dim = [800, 80, 8].index(d)
    i_budget = [20, 100].index(args.budget)
    means = []
    for i in range(-2, 3):
        means += [torch.tensor([-8.0 * i, -8.0 * j] * (d // 2)) for j in range(-2, 3)]
    torch.manual_seed(6)
    weights = torch.randn(len(means)) ** 2
    weights = weights / weights.sum()

    def ou_mixt(alpha_t):
        comp = MultivariateNormal(torch.vstack(tuple((alpha_t ** 0.5) * m for m in means)), torch.eye(d).repeat(len(means), 1, 1))
        return MixtureSameFamily(Categorical(weights), comp)

    mixt = ou_mixt(1)
    betas = torch.linspace(0.02, 1e-4, steps=999)
    alphas_cumprod = torch.cumprod(torch.tensor([1.0] + [1 - b for b in betas]), dim=0)
    os.makedirs(args.out, exist_ok=True)
    for dim_y in args.dim_y:
        i_dy = [1, 2, 4].index(dim_y)
        for rep in range(args.replicates):
            seed = (2 ** i_dim) * (3 ** i_dy) * (5 ** i_budget) + rep
            torch.manual_seed(seed)
            a0 = torch.randn((dim_y, d))
            u, diag, mask, v = build_extended_svd(a0)
            diag = torch.sort(torch.rand_like(diag), descending=True).values
            a = u @ (torch.diag(diag) @ v[mask == 1, :])
            x_star = mixt.sample()
            std = torch.rand((1,))[0] * max(diag)
            y = a @ x_star
            y = y + torch.randn_like(y) * std
            if args.noise_seed is not None:
                torch.manual_seed(1000 * seed + args.noise_seed)
            steps = get_optimal_timesteps_from_singular_values(
                alphas_cumprod=alphas_cumprod, singular_value=diag, n_timesteps=args.budget, var=(std ** 2).item(), mode="else")
            net = Expandednet(base_net=EpsilonNetFromScore(ou_dist=ou_mixt, alphas_cumprod=alphas_cumprod), expanded_size=(1, 1, d))
            with contextlib.redirect_stdout(io.StringIO()):  # GeneralH prints its zero count
                h = GeneralH(H=a)
            x = efficient_generalized_steps_w_grad(
                x=torch.randn(n, 1, 1, d), b=betas, seq=steps[:-1].tolist(), model=net, y_0=y[None, :], H_funcs=h,
                sigma_0=std.item(), etaB=1, etaA=0.85, etaC=1, classes=None, cls_fn=None)[0][-1].flatten(1, 3)
            # MCGdiff: clouds of 1000 particles from one initial draw, as the script.
            score_model = ScoreModel(
                NetReparametrized(base_score_module=EpsilonNetFromScore(ou_dist=ou_mixt, alphas_cumprod=alphas_cumprod),
                                  orthogonal_transformation=v),
                alphas_cumprod=alphas_cumprod, device=torch.device("cpu"))
            score_model.net.device = torch.device("cpu")
            initial = torch.randn(n, d)
            clouds = []
            for batch in initial.reshape(n // 1000, 1000, -1):
                cloud = particle_filter(initial_particles=batch, observation=u.T @ y, score_model=score_model,
                                        likelihood_diagonal=diag, coordinates_mask=mask, var_observation=(std ** 2).item(),
                                        timesteps=steps, eta=eta)
                clouds.append((v.T @ cloud.T).T)
            mcgdiff = torch.cat(clouds, dim=0)
            name = f"d{d}-dy{dim_y}-steps{args.budget}-seed{seed}"
            x.detach().to(torch.float32).numpy().astype("<f4").tofile(os.path.join(args.out, name + ".ddrm.f32"))
            mcgdiff.detach().to(torch.float32).numpy().astype("<f4").tofile(os.path.join(args.out, name + ".mcgdiff.f32"))
            meta = {
                "dim": d, "dim_y": dim_y, "steps": args.budget, "eta": eta, "seed": seed, "samples": n,
                "weights": weights.tolist(), "A": a.tolist(), "sigma_y": std.item(), "y": y.tolist(),
                "x_star": x_star.tolist(), "timesteps": steps.tolist(),
                "ddrm": name + ".ddrm.f32", "mcgdiff": name + ".mcgdiff.f32",
            }
            with open(os.path.join(args.out, name + ".json"), "w") as f:
                json.dump(meta, f)
            print(name, flush=True)


if __name__ == "__main__":
    main()
