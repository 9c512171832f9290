//! Assembling the audit log: its schema and its tonic service (served
//! beside checkout, which writes the payment records).

use anyhow::Context as _;
use boxoffice_contracts::audit::v1::audit_service_server::AuditServiceServer;
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use deadpool_postgres::Pool;

use crate::grpc::AuditGrpc;
use crate::store::AuditStore;

pub struct AuditComponent {
    store: AuditStore,
}

impl AuditComponent {
    pub async fn start(pool: Pool) -> anyhow::Result<Self> {
        crate::store::migrate(&pool)
            .await
            .context("migrating the audit schema")?;
        Ok(Self {
            store: AuditStore::new(pool),
        })
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            AuditServiceServer::new(AuditGrpc::new(self.store.clone()))
                .max_decoding_message_size(boxoffice_runtime::limits::AUDIT_MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }
}
