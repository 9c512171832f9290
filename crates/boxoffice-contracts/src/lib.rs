//! The wire contracts of boxoffice: one module per protobuf package, generated
//! from `proto/` by the workspace's `build.rs`, plus the vocabulary more than
//! one service speaks ([`reason`]s in `ErrorInfo`, caller [`role`]s, webhook [`signature`]s).

pub mod codec;
pub mod reason;
pub mod role;
pub mod signature;

/// Serialized `FileDescriptorSet` of every boxoffice proto, served by gRPC
/// reflection so `grpcurl` and `buf curl` can discover the API.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/boxoffice_descriptor.bin"));

pub mod catalog {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.catalog.v1");
    }
}

pub mod inventory {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.inventory.v1");
    }
}

pub mod accounts {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.accounts.v1");
    }
}

pub mod checkout {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.checkout.v1");
    }
}

/// Sales statistics for organisers.
pub mod stats {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.stats.v1");
    }
}

/// Notification preferences (mail over SMTP, sent by `boxoffice-notify`).
pub mod notify {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.notify.v1");
    }
}

/// Webhooks for integrators (`boxoffice-webhooks`).
pub mod webhooks {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.webhooks.v1");
    }
}

/// The audit log of admin actions and payment operations (`boxoffice-audit`).
pub mod audit {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.audit.v1");
    }
}

/// Domain events every service publishes, in one envelope
/// (`proto/boxoffice/events/v1/envelope.proto` states the compatibility rule).
pub mod events {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.events.v1");
    }
}

/// Test and benchmark support: a trivial echo service (the gRPC baseline).
pub mod testing {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all, missing_docs)]
        tonic::include_proto!("boxoffice.testing.v1");
    }
}
