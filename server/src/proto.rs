//! Generated protobuf and gRPC code.

#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]

/// Quiver's native API.
pub mod quiver {
    pub mod v1 {
        tonic::include_proto!("quiver.v1");
    }
}

/// Feast's serving API, wire-compatible with Feast's own protos.
pub mod feast {
    pub mod types {
        tonic::include_proto!("feast.types");
    }
    pub mod serving {
        tonic::include_proto!("feast.serving");
    }
}

/// The encoded descriptor set of every proto above, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
