//! Accounts through the edge: register, log in, GetMe with the token; a
//! wrong password and an unknown email look the same; an email holds one
//! account; bad input names its field; repeated failures are slowed down.

use std::time::Duration;

use boxoffice_contracts::accounts::v1 as pb;
use boxoffice_runtime::status::{field_of, reason_of};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::edge_world::{EdgeWorld, login, with_token};

fn register(email: &str, password: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        email: email.into(),
        password: password.into(),
        display_name: "Ada Lovelace".into(),
    }
}

#[tokio::test]
async fn register_log_in_and_get_me_through_the_edge() {
    let world = EdgeWorld::new().await;
    let mut accounts = world.accounts();
    let user = accounts
        .register(register("  Ada@Example.com ", "analytical engine"))
        .await
        .expect("registering")
        .into_inner();
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.roles, vec![pb::Role::Customer as i32]);
    assert!(user.create_time.is_some());

    let session = accounts
        .login(pb::LoginRequest {
            email: "ADA@example.com".into(),
            password: "analytical engine".into(),
        })
        .await
        .expect("logging in")
        .into_inner();
    assert_eq!(session.token_type, "Bearer");
    let expires = session.expire_time.expect("an expiry").seconds;
    let now = chrono::Utc::now().timestamp();
    assert!(expires > now && expires <= now + 3600, "short-lived token");
    assert_eq!(
        session.user.as_ref().map(|u| u.id.clone()),
        Some(user.id.clone())
    );

    let me = accounts
        .get_me(with_token(&session.access_token, pb::GetMeRequest {}))
        .await
        .expect("GetMe with the token")
        .into_inner();
    assert_eq!(me, user);

    let status = accounts.get_me(pb::GetMeRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_look_the_same() {
    let world = EdgeWorld::new().await;
    let mut accounts = world.accounts();
    accounts
        .register(register("grace@example.com", "cobol forever"))
        .await
        .expect("registering");
    let wrong_password = accounts
        .login(pb::LoginRequest {
            email: "grace@example.com".into(),
            password: "fortran forever".into(),
        })
        .await
        .unwrap_err();
    let unknown_email = accounts
        .login(pb::LoginRequest {
            email: "nobody@example.com".into(),
            password: "cobol forever".into(),
        })
        .await
        .unwrap_err();
    for status in [&wrong_password, &unknown_email] {
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(reason_of(status).as_deref(), Some("BAD_CREDENTIALS"));
    }
    assert_eq!(wrong_password.message(), unknown_email.message());
    assert_eq!(wrong_password.details(), unknown_email.details());
}

#[tokio::test]
async fn an_email_holds_one_account_and_bad_input_names_its_field() {
    let world = EdgeWorld::new().await;
    let mut accounts = world.accounts();
    accounts
        .register(register("linus@example.com", "penguins rule"))
        .await
        .expect("registering");
    let status = accounts
        .register(register("LINUS@example.com", "other password"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason_of(&status).as_deref(), Some("EMAIL_TAKEN"));

    for (request, field) in [
        (register("not-an-email", "long enough"), "email"),
        (register("short@example.com", "short"), "password"),
        (
            pb::RegisterRequest {
                display_name: "  ".into(),
                ..register("blank@example.com", "long enough")
            },
            "display_name",
        ),
    ] {
        let status = accounts.register(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(field_of(&status).as_deref(), Some(field));
    }
}

#[tokio::test]
async fn repeated_login_failures_are_slowed_down() {
    let world = EdgeWorld::new().await;
    let mut accounts = world.accounts();
    accounts
        .register(register("target@example.com", "the real password"))
        .await
        .expect("registering");
    let attempt = |password: &str| pb::LoginRequest {
        email: "target@example.com".into(),
        password: password.into(),
    };
    let mut throttled = None;
    for guess in 0..10 {
        let status = accounts
            .login(attempt(&format!("guess number {guess}")))
            .await
            .unwrap_err();
        if status.code() == Code::ResourceExhausted {
            throttled = Some(status);
            break;
        }
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = throttled.expect("guessing is throttled");
    assert_eq!(reason_of(&status).as_deref(), Some("TOO_MANY_ATTEMPTS"));
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a retry delay");
    assert!(delay > Duration::ZERO);
    // Even the right password waits out the delay.
    let status = accounts
        .login(attempt("the real password"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn the_demo_admin_can_administer_and_customers_cannot() {
    let world = EdgeWorld::new().await;
    let admin = world.admin_token().await;
    let me = world
        .accounts()
        .get_me(with_token(&admin, pb::GetMeRequest {}))
        .await
        .expect("GetMe")
        .into_inner();
    assert!(me.roles.contains(&(pb::Role::Admin as i32)));
    let customer = login(
        &mut world.accounts(),
        boxoffice_accounts::server::DEMO_CUSTOMER_EMAIL,
        boxoffice_accounts::server::DEMO_PASSWORD,
    )
    .await;
    let me = world
        .accounts()
        .get_me(with_token(&customer, pb::GetMeRequest {}))
        .await
        .expect("GetMe")
        .into_inner();
    assert_eq!(me.roles, vec![pb::Role::Customer as i32]);
}
