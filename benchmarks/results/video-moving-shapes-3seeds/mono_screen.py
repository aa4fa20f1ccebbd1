"""Screen: moving_shapes with the colours taken out (a white shape on a black background in
every clip, same shapes, sizes, places, motions and noise as `easy`), so that what a masked
tube hides is where the shape is, not the clip's colours (86-92% of V-JEPA's target
variance on `easy`, variance_share.py). Clips cached under their own key.

    python mono_screen.py train vjepa-moving-shapes train.threads=1 train.run_dir=R
    python mono_screen.py screen R [random]      # quick_screen.py on the mono clips
"""
import sys

import numpy as np

from jepalab.data import moving_shapes as ms

ms.VERSION = 1001  # a cache key of its own


def render(labels, frames, image_size, rng, difficulty="easy"):
    if difficulty != "easy":
        raise ValueError("the mono screen renders the easy setting only")
    n, s2 = len(labels), image_size * 2
    axis = ((np.arange(s2) + 0.5) / s2 * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    target = ms._Objects(n, rng, (0.4, 0.55), *ms._motion(labels, rng))
    clips = np.empty((n, frames, 3, image_size, image_size), dtype=np.uint8)
    for t in range(frames):
        canvas = target.inside(t, xx, yy).astype(np.float32)
        canvas = canvas.reshape(n, image_size, 2, image_size, 2).mean(axis=(2, 4))
        canvas += rng.normal(0, 0.02, canvas.shape).astype(np.float32)
        gray = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)
        clips[:, t] = gray[:, None]
    return clips


ms.render = render
if __name__ == "__main__":
    if sys.argv[1] == "screen":
        from quick_screen import screen_run
        screen_run(sys.argv[2], with_random="random" in sys.argv[3:])
    else:
        from jepalab.cli import main
        sys.exit(main())
