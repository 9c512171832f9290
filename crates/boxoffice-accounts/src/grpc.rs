//! The tonic face of accounts: wire messages are parsed into domain types
//! here, and domain values turned back into messages.

use std::sync::Arc;

use boxoffice_contracts::accounts::v1 as pb;
use boxoffice_runtime::Caller;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::domain::{DisplayName, Email, NewPassword, Role, User};
use crate::error::AccountsError;
use crate::service::Accounts;

#[derive(Clone)]
pub struct AccountsGrpc {
    accounts: Arc<Accounts>,
}

impl AccountsGrpc {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self { accounts }
    }
}

fn user_to_pb(user: &User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        roles: user
            .roles
            .iter()
            .map(|role| match role {
                Role::Customer => pb::Role::Customer as i32,
                Role::Admin => pb::Role::Admin as i32,
            })
            .collect(),
        create_time: Some(prost_types::Timestamp {
            seconds: user.created_at.timestamp(),
            nanos: user.created_at.timestamp_subsec_nanos() as i32,
        }),
    }
}

#[tonic::async_trait]
impl pb::accounts_service_server::AccountsService for AccountsGrpc {
    #[instrument(skip_all)]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let request = request.into_inner();
        let email = Email::parse("email", &request.email).map_err(AccountsError::from)?;
        let password =
            NewPassword::parse("password", &request.password).map_err(AccountsError::from)?;
        let display_name = DisplayName::parse("display_name", &request.display_name)
            .map_err(AccountsError::from)?;
        let user = self
            .accounts
            .register(email, password, display_name, &[Role::Customer])
            .await?;
        Ok(Response::new(user_to_pb(&user)))
    }

    #[instrument(skip_all)]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let request = request.into_inner();
        let session = self
            .accounts
            .login(&request.email, &request.password)
            .await?;
        Ok(Response::new(pb::LoginResponse {
            access_token: session.access_token,
            token_type: "Bearer".to_owned(),
            expire_time: Some(prost_types::Timestamp {
                seconds: session.expires_at as i64,
                nanos: 0,
            }),
            user: Some(user_to_pb(&session.user)),
        }))
    }

    #[instrument(skip_all)]
    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let user = self.accounts.me(&caller).await?;
        Ok(Response::new(user_to_pb(&user)))
    }
}
