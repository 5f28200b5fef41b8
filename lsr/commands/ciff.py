"""``lsr ciff export`` / ``lsr ciff import``: exchange indexes in CIFF, the Common Index File Format."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ciff", help="exchange indexes in CIFF (Anserini, PISA, JASS, Terrier)",
                       description="Import and export indexes in the Common Index File Format (CIFF): "
                                   "varint-delimited protobuf messages, a header, one postings list a term "
                                   "(doc id gaps, integer tf), one record a document.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    e = actions.add_parser(
        "export", help="write an index as a CIFF file",
        description="Write an lsr index as a CIFF file: postings lists in ascending term order (UTF-8 bytes), "
                    "doc ids = lsr's document numbers, tf = the integer impacts exactly. A float index is "
                    "quantised with scale (2^bits-1)/largest weight, tf = floor(weight*scale+0.5) (postings "
                    "that round to 0 are left out), and the scale is written in the header description. "
                    "Document lengths: those a CIFF import stored, else the sum of the document's tf values.")
    e.add_argument("-i", "--index", required=True, help="lsr index directory")
    e.add_argument("-o", "--output", required=True, help="CIFF file to write (written aside, then renamed)")
    e.add_argument("--bits", type=int, choices=(8, 16), default=8,
                   help="tf bits for a float index (default 8; integer indexes keep their impacts)")
    e.add_argument("--description", help="the header description (default: the description of the CIFF file "
                                         "the index was imported from, else lsr's own, naming the quantisation)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing file at the output")
    e.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    e.set_defaults(func=run_export)
    i = actions.add_parser(
        "import", help="build an index from a CIFF file",
        description="Build an lsr index from a CIFF file: CIFF docid d becomes document d with its "
                    "collection_docid as the external id, tf becomes the impact (uint8 when every tf is <= 255, "
                    "else uint16), quantisation identity (scale 1), and the doclengths are stored. The file is "
                    "checked as it is read; a bad file is an error and leaves no output behind.")
    i.add_argument("input", help="CIFF file")
    i.add_argument("-o", "--output", required=True, help="index directory to create")
    i.add_argument("--overwrite", action="store_true",
                   help="replace an existing lsr index (or empty directory) at the output")
    i.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    i.set_defaults(func=run_import)


def run_export(args: argparse.Namespace) -> int:
    from lsr.ciff import export_index

    st = export_index(args.index, args.output, bits=args.bits, description=args.description,
                      overwrite=args.overwrite, progress=not args.no_progress)
    q = f"; float impacts quantised at scale {st.scale:.6g} ({st.dropped} postings rounded to 0)" \
        if st.scale != 1.0 or st.dropped else ""
    print(f"wrote {st.postings_lists} postings lists ({st.postings} postings) and {st.documents} documents "
          f"to {st.path} ({st.bytes} bytes) in {st.seconds:.1f} s{q}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    import time

    from lsr.ciff import import_index

    t0 = time.perf_counter()
    ix = import_index(args.input, args.output, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"imported {ix.num_documents} documents, {ix.num_terms} terms, {ix.num_postings} postings "
          f"({ix.manifest['impact_dtype']} impacts) into {ix.path} in {time.perf_counter() - t0:.1f} s")
    return 0
