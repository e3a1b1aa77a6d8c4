//! Sans-IO leased locks with fencing tokens (work in progress).
