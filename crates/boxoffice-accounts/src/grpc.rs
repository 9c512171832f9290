//! The tonic face of accounts: wire messages are parsed into domain types
//! here, and domain values turned back into messages.

use std::pin::Pin;
use std::sync::Arc;

use boxoffice_contracts::accounts::v1 as pb;
use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use crate::domain::{DisplayName, Email, NewPassword, Role, User};
use crate::error::AccountsError;
use crate::revocations::{RevocationHub, Revoked};
use crate::service::{Accounts, Session};
use crate::social::flow::FinishedLogin;
use crate::store::{IdentityRecord, SessionRecord};

#[derive(Clone)]
pub struct AccountsGrpc {
    accounts: Arc<Accounts>,
    revocations: Arc<RevocationHub>,
}

impl AccountsGrpc {
    pub fn new(accounts: Arc<Accounts>, revocations: Arc<RevocationHub>) -> Self {
        Self {
            accounts,
            revocations,
        }
    }
}

fn timestamp(time: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

fn session_to_pb(session: Session) -> pb::LoginResponse {
    pb::LoginResponse {
        access_token: session.access_token,
        token_type: "Bearer".to_owned(),
        expire_time: Some(prost_types::Timestamp {
            seconds: session.expires_at as i64,
            nanos: 0,
        }),
        user: Some(user_to_pb(&session.user)),
        refresh_token: session.refresh_token,
        refresh_expire_time: timestamp(session.refresh_expires_at),
        session_id: session.session_id.to_string(),
    }
}

fn session_record_to_pb(session: &SessionRecord, current: Option<Uuid>) -> pb::Session {
    pb::Session {
        id: session.id.to_string(),
        create_time: timestamp(session.created_at),
        last_use_time: timestamp(session.last_used_at),
        expire_time: timestamp(session.expires_at),
        current: current == Some(session.id),
    }
}

fn revocation_to_pb(revoked: Revoked) -> pb::Revocation {
    pb::Revocation {
        session_id: revoked.session_id.to_string(),
        forget_time: timestamp(revoked.forget_at),
    }
}

fn new_password(field: &'static str, raw: &str) -> Result<NewPassword, AccountsError> {
    Ok(NewPassword::parse(field, raw)?)
}

fn identity_to_pb(accounts: &Accounts, identity: &IdentityRecord) -> pb::SocialIdentity {
    pb::SocialIdentity {
        id: identity.id.to_string(),
        provider: accounts
            .social()
            .name_of_issuer(&identity.issuer)
            .unwrap_or_default()
            .to_owned(),
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        email: identity.email.clone().unwrap_or_default(),
        create_time: timestamp(identity.created_at),
        last_login_time: timestamp(identity.last_login_at),
    }
}

type RevocationStream = Pin<Box<dyn Stream<Item = Result<pb::Revocation, Status>> + Send>>;

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
        create_time: timestamp(user.created_at),
        pending_email: user.pending_email.clone().unwrap_or_default(),
        email_verified: user.email_verified,
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
        Ok(Response::new(session_to_pb(session)))
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

    #[instrument(skip_all)]
    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let session = self
            .accounts
            .refresh_session(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(session_to_pb(session)))
    }

    #[instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let session = boxoffice_runtime::identity::session_id(request.metadata());
        self.accounts.logout(&caller, session).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    #[instrument(skip_all)]
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let current = boxoffice_runtime::identity::session_id(request.metadata());
        let sessions = self.accounts.list_sessions(&caller).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions
                .iter()
                .map(|session| session_record_to_pb(session, current))
                .collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let session_id = Uuid::parse_str(request.get_ref().session_id.trim()).map_err(|_| {
            AccountsError::from(crate::domain::FieldError::new(
                "session_id",
                "must be a UUID",
            ))
        })?;
        self.accounts.revoke_session(&caller, session_id).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    type WatchRevocationsStream = RevocationStream;

    #[instrument(skip_all)]
    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        if !Caller::from_metadata(request.metadata()).has_role(Caller::SERVICE) {
            return Err(AccountsError::ServiceRoleRequired.into());
        }
        let (live, receiver) = self.revocations.watch().await?;
        let first = futures::stream::iter(
            live.into_iter()
                .map(|revoked| Ok(revocation_to_pb(revoked))),
        );
        // A watcher that lagged is told so and ends; it reconnects and
        // starts over from the live set.
        let rest = BroadcastStream::new(receiver).scan(false, |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            futures::future::ready(Some(match item {
                Ok(revoked) => Ok(revocation_to_pb(revoked)),
                Err(_lagged) => {
                    *ended = true;
                    Err(Status::aborted("revocation feed fell behind; watch again"))
                }
            }))
        });
        let stopping = self.revocations.stopping();
        Ok(Response::new(Box::pin(
            first.chain(rest).take_until(stopping),
        )))
    }

    #[instrument(skip_all)]
    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let request = request.into_inner();
        let display_name = request
            .display_name
            .as_deref()
            .map(|name| DisplayName::parse("display_name", name))
            .transpose()
            .map_err(AccountsError::from)?;
        let email = request
            .email
            .as_deref()
            .map(|email| Email::parse("email", email))
            .transpose()
            .map_err(AccountsError::from)?;
        let user = self
            .accounts
            .update_profile(&caller, display_name, email)
            .await?;
        Ok(Response::new(user_to_pb(&user)))
    }

    #[instrument(skip_all)]
    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let user = self
            .accounts
            .verify_email(&request.into_inner().token)
            .await?;
        Ok(Response::new(user_to_pb(&user)))
    }

    #[instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let session = boxoffice_runtime::identity::session_id(request.metadata());
        let request = request.into_inner();
        let new = new_password("new_password", &request.new_password)?;
        self.accounts
            .change_password(&caller, session, &request.current_password, new)
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    #[instrument(skip_all)]
    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        self.accounts
            .request_password_reset(&request.into_inner().email)
            .await?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    #[instrument(skip_all)]
    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        let request = request.into_inner();
        let new = new_password("new_password", &request.new_password)?;
        self.accounts.reset_password(&request.token, new).await?;
        Ok(Response::new(pb::ResetPasswordResponse {}))
    }

    #[instrument(skip_all)]
    async fn export_my_data(
        &self,
        request: Request<pb::ExportMyDataRequest>,
    ) -> Result<Response<pb::ExportMyDataResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let json = self.accounts.export(&caller).await?;
        Ok(Response::new(pb::ExportMyDataResponse { json }))
    }

    #[instrument(skip_all)]
    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        self.accounts
            .delete_account(&caller, &request.into_inner().password)
            .await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    #[instrument(skip_all)]
    async fn list_social_providers(
        &self,
        _request: Request<pb::ListSocialProvidersRequest>,
    ) -> Result<Response<pb::ListSocialProvidersResponse>, Status> {
        Ok(Response::new(pb::ListSocialProvidersResponse {
            providers: self.accounts.social().provider_names(),
        }))
    }

    #[instrument(skip_all)]
    async fn start_social_login(
        &self,
        request: Request<pb::StartSocialLoginRequest>,
    ) -> Result<Response<pb::StartSocialLoginResponse>, Status> {
        let request = request.into_inner();
        let started = self
            .accounts
            .start_social_login(&request.provider, &request.redirect_uri)
            .await?;
        Ok(Response::new(pb::StartSocialLoginResponse {
            authorization_url: started.authorization_url,
            state: started.state,
            expire_time: timestamp(started.expires_at),
        }))
    }

    #[instrument(skip_all)]
    async fn finish_social_login(
        &self,
        request: Request<pb::FinishSocialLoginRequest>,
    ) -> Result<Response<pb::FinishSocialLoginResponse>, Status> {
        let request = request.into_inner();
        let finished = self
            .accounts
            .finish_social_login(&request.state, &request.code)
            .await?;
        let result = match finished {
            FinishedLogin::Session(session) => {
                pb::finish_social_login_response::Result::Login(session_to_pb(*session))
            }
            FinishedLogin::LinkRequired {
                link_token,
                email,
                provider,
                expires_at,
            } => pb::finish_social_login_response::Result::LinkRequired(pb::LinkRequired {
                link_token,
                email,
                provider,
                expire_time: timestamp(expires_at),
            }),
        };
        Ok(Response::new(pb::FinishSocialLoginResponse {
            result: Some(result),
        }))
    }

    #[instrument(skip_all)]
    async fn link_social_login(
        &self,
        request: Request<pb::LinkSocialLoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let request = request.into_inner();
        let session = self
            .accounts
            .link_social_login(&caller, &request.link_token, &request.password)
            .await?;
        Ok(Response::new(session_to_pb(session)))
    }

    #[instrument(skip_all)]
    async fn list_social_identities(
        &self,
        request: Request<pb::ListSocialIdentitiesRequest>,
    ) -> Result<Response<pb::ListSocialIdentitiesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let identities = self.accounts.social_identities(&caller).await?;
        Ok(Response::new(pb::ListSocialIdentitiesResponse {
            identities: identities
                .iter()
                .map(|identity| identity_to_pb(&self.accounts, identity))
                .collect(),
        }))
    }

    #[instrument(skip_all)]
    async fn unlink_social_identity(
        &self,
        request: Request<pb::UnlinkSocialIdentityRequest>,
    ) -> Result<Response<pb::UnlinkSocialIdentityResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let identity_id = Uuid::parse_str(request.get_ref().identity_id.trim()).map_err(|_| {
            AccountsError::from(crate::domain::FieldError::new(
                "identity_id",
                "must be a UUID",
            ))
        })?;
        self.accounts
            .unlink_social_identity(&caller, identity_id)
            .await?;
        Ok(Response::new(pb::UnlinkSocialIdentityResponse {}))
    }
}
