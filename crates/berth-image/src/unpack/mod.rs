//! Layer unpacking into snapshot directories (whiteouts to overlay form, no escapes).
