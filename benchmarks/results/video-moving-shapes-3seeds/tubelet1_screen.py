"""Screen: tubelets of one frame (8 x 4 x 4 = 128 tokens a clip instead of 64), so that no
token's own filter can average two frames: the motion has to be carried between tokens.

    python tubelet1_screen.py train vjepa-moving-shapes train.run_dir=R
    python tubelet1_screen.py screen R [random]      # quick_screen.py, random init at tubelet 1
"""
import dataclasses
import sys

from jepalab import build

original_spec = build.backbone_spec


def backbone_spec(cfg):
    return dataclasses.replace(original_spec(cfg), tubelet=1)


build.backbone_spec = backbone_spec
if __name__ == "__main__":
    if sys.argv[1] == "screen":
        import quick_screen
        quick_screen.backbone_spec = backbone_spec
        quick_screen.screen_run(sys.argv[2], with_random="random" in sys.argv[3:])
    else:
        from jepalab.cli import main
        sys.exit(main())
