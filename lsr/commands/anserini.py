"""``lsr anserini export``: an index as Anserini's ``JsonVectorCollection`` (for indexing with Lucene)."""

from __future__ import annotations

import argparse

from .argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("anserini", help="exchange indexes with Anserini (export as a JsonVectorCollection)",
                       description="Interoperate with Anserini / pyserini (Lucene).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    e = actions.add_parser(
        "export", help="write an index as a JsonVectorCollection directory",
        description="Write every document of an lsr index as one JSON line {\"id\", \"contents\": \"\", "
                    "\"vector\": {term: integer impact}} in part-NNNNN.jsonl files, with lsr-export.json "
                    "describing the export. Index it with: python -m pyserini.index.lucene --collection "
                    "JsonVectorCollection --input DIR --index LUCENE_DIR --generator "
                    "DefaultLuceneDocumentGenerator --impact --pretokenized. Quantised indexes export their "
                    "impacts as stored; float indexes are quantised to --bits with scale (2^bits-1)/max weight.")
    e.add_argument("-i", "--index", required=True, help="lsr index directory")
    e.add_argument("-o", "--output", required=True, help="output directory (written aside, then renamed)")
    e.add_argument("--bits", type=int, choices=(8, 16), default=8,
                   help="impact bits for a float index (default 8; quantised indexes keep theirs)")
    e.add_argument("--docs-per-file", type=positive_int, default=1_000_000,
                   help="documents per part file (default 1,000,000)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an earlier lsr Anserini export at the output (nothing else)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsr.anserini import export_index

    st = export_index(args.index, args.output, bits=args.bits, docs_per_file=args.docs_per_file,
                      overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {st.documents} documents ({st.postings} postings, {st.empty_documents} empty) in "
          f"{st.files} file(s) to {st.path} in {st.seconds:.1f} s")
    return 0
