"""schemathesis hooks for .ci/schemathesis: what to send as application/pdf (documents the PSP
uploads). Whole PDFs, a truncated one, and arbitrary bytes: the server must answer each within
the document (200, 400, 413, 422), never with a 5xx."""
from hypothesis import strategies as st

import schemathesis

WHOLE = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"

schemathesis.openapi.media_type(
    "application/pdf",
    st.one_of(st.just(WHOLE), st.just(WHOLE[:20]), st.binary(max_size=4096)),
)
