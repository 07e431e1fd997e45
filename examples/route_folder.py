"""Route every image in a folder with a saved Router and print one line per image.

    python examples/route_folder.py RUN_DIR IMAGE_FOLDER [--reject-below 0.6]
"""

import argparse

from hierarchy import Router

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model", help="folder written by Router.save / hierarchy train")
parser.add_argument("folder", help="folder of MRI slices (searched recursively)")
parser.add_argument("--reject-below", type=float, help="refer images whose top probability is below this")
args = parser.parse_args()

router = Router.load(args.model)
table = router.predict(args.folder, route="hierarchical", reject_below=args.reject_below)
for row in table.itertuples():
    decision = "REFER TO RADIOLOGIST" if row.referred else row.pred_label
    print(f"{row.id}: plane={row.pred_plane} expert={row.expert} -> {decision}")
