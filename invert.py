#!/usr/bin/env python3
"""Invert photos of garments into a trained generator: projection, PTI or HyperStyle.

\b
Examples:
  # the shipped garment model, offline (pixel loss only), a jacket drawn outside its training set:
  python invert.py --method=pti --network=garments --class=jacket --target=docs/images/jacket.png --perceptual=none --outdir=out
  # W projection as NVIDIA's projector (1000 steps, VGG16 LPIPS + pixel loss):
  python invert.py --method=project --network=snapshot.pkl --target=shirt.jpg --outdir=out
  # pivotal tuning; writes out/shirt_pti.pkl, a snapshot that gen_images.py and edits use as is:
  python invert.py --method=pti --network=snapshot.pkl --target=photos/ --outdir=out --video
  # a person wearing the garment: the mask selects the garment, the output is the flat garment:
  python invert.py --method=pti --network=snapshot.pkl --target=worn.jpg --mask=worn_mask.png --outdir=out
  # HyperStyle: train the encoder + hypernetwork once per snapshot, then invert in one pass:
  python invert.py --method=hyperstyle --train-encoder --network=snapshot.pkl --outdir=inverter
  python invert.py --method=hyperstyle --encoder=inverter/hyperstyle.pt --network=snapshot.pkl --target=shirt.jpg --outdir=out
  # NVIDIA projector's option names work too (--num-steps, --save-video), and the seed project's:
  python invert.py --method=project --network=snapshot.pkl --target=shirt.jpg --num-steps=1000 --save-video=true --outdir=out
  python invert.py --input_image input/clothing_photo.jpg --checkpoint_path weights/stylegan3_model.pt --output_path results/

See docs/inversion.md for every option and output.
"""
from __future__ import annotations

import click

from data.colour import COLOUR, COLOUR_HELP
from generation.options import NETWORK_HELP
from generation.seeds import MAX_SEED
from inversion.run import InvertOptions, run_job
from torch_utils.cli import Spellings, finite_float, run, say


@click.command(help=__doc__)
@click.option('--method', type=click.Choice(['project', 'pti', 'hyperstyle']), default='pti', show_default=True,
              help='project: latent optimisation; pti: W pivot + generator tuning; hyperstyle: encoder + hypernetwork')
@click.option('--network', '--checkpoint_path', '--checkpoint-path', 'network', required=True, metavar='PATH|URL|NAME',
              cls=Spellings, help=NETWORK_HELP)
@click.option('--target', '--input_image', '--input-image', 'target', metavar='IMAGE|FOLDER', cls=Spellings,
              help='Photo or folder of photos to invert')
@click.option('--outdir', '--output_path', '--output-path', 'outdir', required=True, metavar='DIR', cls=Spellings,
              help='Where to write the results')
@click.option('--mask', metavar='IMAGE|FOLDER', help='Garment mask (white = garment); losses only look inside it')
@click.option('--fit', type=click.Choice(['auto', 'pad', 'crop', 'mask']), default='auto', show_default=True,
              help='Make the photo square: pad on its background colour, centre-crop, or a square around the mask '
                   '(auto: mask if given, else pad)')
@click.option('--background', type=COLOUR, default='auto', show_default=True,
              help=f'Padding colour: {COLOUR_HELP}')
@click.option('--space', type=click.Choice(['w', 'w+']), default='w', show_default=True, help='Latent space of --method=project')
@click.option('--steps', '--num-steps', 'steps', type=click.IntRange(min=1), cls=Spellings, help='Projection steps  [default: 1000 project, 450 PTI pivot]')
@click.option('--lr', type=finite_float(min=0, min_open=True), help='Projection learning rate  [default: 0.1]')
@click.option('--pti-steps', type=click.IntRange(min=0), default=350, show_default=True, help='PTI generator-tuning steps')
@click.option('--pti-lr', type=finite_float(min=0, min_open=True), default=3e-4, show_default=True, help='PTI tuning learning rate')
@click.option('--locality/--no-locality', default=True, show_default=True, help="PTI's locality regularisation")
@click.option('--perceptual', default='vgg16', show_default=True, metavar='vgg16|PATH|URL|lpips|none',
              help="Perceptual loss: NVIDIA's VGG16 LPIPS (downloaded once, or a local vgg16.pt), the lpips package, or none")
@click.option('--perceptual-weight', type=finite_float(min=0), default=1.0, show_default=True)
@click.option('--pixel-weight', type=finite_float(min=0), default=1.0, show_default=True, help='Weight of the pixel MSE')
@click.option('--seed', type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help='Random seed (noise maps, latent jitter)')
@click.option('--class', 'class_idx', metavar='INDEX|NAME', help='Class label (conditional networks): index, or name where the snapshot records names')
@click.option('--video', is_flag=True, help='Also write an MP4 of the optimisation (target | reconstruction)')
@click.option('--save-video', type=bool, metavar='BOOL', help="The same as NVIDIA's projector spells it: --save-video=true")
@click.option('--device', default='auto', show_default=True, help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
@click.option('--encoder', type=click.Path(dir_okay=False), help='HyperStyle inverter file (from --train-encoder)')
@click.option('--encoder-iters', type=click.IntRange(min=0), default=5, show_default=True, help='HyperStyle: encoder (ReStyle) iterations')
@click.option('--hyper-iters', type=click.IntRange(min=0), default=5, show_default=True, help='HyperStyle: hypernetwork refinements')
@click.option('--train-encoder', is_flag=True, help='HyperStyle: train the encoder and hypernetwork for --network on its own '
              'images, write OUTDIR/hyperstyle.pt (or --encoder), then invert --target if given')
@click.option('--train-steps', type=click.IntRange(min=0), default=20000, show_default=True, help='Training steps of each stage')
@click.option('--train-batch', type=click.IntRange(min=1), default=8, show_default=True)
@click.option('--train-lr', type=finite_float(min=0, min_open=True), default=1e-4, show_default=True)
@click.option('--w-avg-samples', type=click.IntRange(min=1), default=10000, show_default=True, help='Samples for the mean latent')
def main(video: bool, save_video: bool, **opts) -> list[dict]:
    """Invert photos into a generator."""
    return run_job(InvertOptions(video=video or bool(save_video), **opts), log=say)


if __name__ == '__main__':
    run(main)
