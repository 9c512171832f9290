//! Social login with OpenID Connect (issue 20), through the edge of a whole
//! system, against a real OpenID provider: the certified `oidc-provider`
//! (npm, `integration/oidc/provider.js`) run by each test as its own Node.js
//! process. The test plays the browser: it follows the authorization URL's
//! redirects (the provider's interaction API logs in the `login_hint`
//! account) to the redirect URI, and hands state and code back to
//! boxoffice. Checked: accounts made and found again, sessions that work,
//! state, nonce, code and signature attacks refused, linking to a password
//! account only with the owner's proof, ownership of identities (user B
//! against user A), export and erasure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use boxoffice::{System, SystemOptions};
use boxoffice_accounts::AccountsConfig;
use boxoffice_accounts::config::{
    MissingSecret, OidcProviderConfig, SocialLoginConfig, TokenConfig,
};
use boxoffice_checkout::config::CheckoutConfig;
use boxoffice_contracts::accounts::v1 as pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::accounts::v1::finish_social_login_response::Result as Finished;
use boxoffice_edge::EdgeConfig;
use boxoffice_inventory::config::InventoryConfig;
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::status::reason_of;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{connect, with_token};
use crate::harness::{TestDb, delete_redis_keys, redis_url, test_config};

/// Where the provider sends the browser back; nothing listens there (the
/// test reads the redirect instead of following it).
const REDIRECT_URI: &str = "http://127.0.0.1:9/social/callback";
const CLIENT_ID: &str = "boxoffice-test";
const CLIENT_SECRET: &str = "boxoffice-test-secret-with:odd&characters";
const PASSWORD: &str = "correct horse battery";
/// How long the provider's authorization codes live, unless a test says.
const DEFAULT_CODE_TTL_SECS: u32 = 60;

/// How the provider signs ID tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// With the key its JWKS publishes.
    Published,
    /// With a key of its own that its JWKS does not list.
    Unpublished,
}

/// A running `oidc-provider`, killed when dropped.
struct OpenIdProvider {
    issuer: String,
    base: reqwest::Url,
    process: tokio::process::Child,
}

impl OpenIdProvider {
    async fn start(signing: Signing) -> Self {
        Self::start_at(signing, None, DEFAULT_CODE_TTL_SECS).await
    }

    /// With `at` (issuer and base URL), a provider that takes over from
    /// one that was stopped: same issuer and port, new keys. Its
    /// authorization codes live `code_ttl_secs`.
    async fn start_at(
        signing: Signing,
        at: Option<(&str, &reqwest::Url)>,
        code_ttl_secs: u32,
    ) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the test OpenID provider is not installed: run scripts/test, or `npm ci` in {}",
            dir.display()
        );
        let mut command = tokio::process::Command::new("node");
        if let Some((issuer, base)) = at {
            let port = base.port().expect("a port").to_string();
            command.env("ISSUER", issuer).env("PORT", port);
        } else {
            command.env("PORT", "0");
        }
        let mut process = command
            .arg("provider.js")
            .current_dir(&dir)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URIS", REDIRECT_URI)
            .env("CODE_TTL_SECS", code_ttl_secs.to_string())
            .env(
                "SIGNING",
                match signing {
                    Signing::Published => "published",
                    Signing::Unpublished => "unpublished",
                },
            )
            // Closed when this process goes, which ends the provider too.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node (Node.js 20.19 or newer; scripts/test installs it)");
        let stdout = process.stdout.take().expect("the provider's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the provider listens within a minute")
            .expect("reading the provider's stdout")
            .expect("the provider printed where it listens");
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("listening"), "{line}");
        let issuer = words.next().expect("the issuer").to_owned();
        let base = reqwest::Url::parse(words.next().expect("the base URL")).expect("a URL");
        // The provider prints notices later: keep reading, so its writes
        // never meet a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer,
            base,
            process,
        }
    }

    /// Stops this provider and starts another on the same issuer and port,
    /// with new signing keys (a key rotation, as providers do).
    async fn rotate_keys(&mut self) {
        self.process.kill().await.expect("stopping the provider");
        *self = Self::start_at(
            Signing::Published,
            Some((&self.issuer, &self.base)),
            DEFAULT_CODE_TTL_SECS,
        )
        .await;
    }
}

struct World {
    db: TestDb,
    system: System,
    shutdown: Shutdown,
    prefix: String,
    edge: Channel,
    provider: OpenIdProvider,
}

impl World {
    async fn start(signing: Signing) -> Self {
        Self::start_with(signing, SocialLoginConfig::default().jwks_min_refetch).await
    }

    /// `jwks_min_refetch`: how soon accounts may fetch the provider's keys
    /// again for an unknown key id.
    async fn start_with(signing: Signing, jwks_min_refetch: Duration) -> Self {
        Self::start_with_provider(OpenIdProvider::start(signing).await, jwks_min_refetch).await
    }

    async fn start_with_provider(provider: OpenIdProvider, jwks_min_refetch: Duration) -> Self {
        let db = TestDb::new().await;
        let config = test_config(&db, &[]);
        let prefix = format!("social{}:", Uuid::new_v4().simple());
        let tokens = TokenConfig::from_vars(&BTreeMap::new(), MissingSecret::GenerateEphemeral)
            .expect("token configuration");
        let inventory = InventoryConfig::from_vars(&BTreeMap::from([(
            "BOXOFFICE_REDIS_KEY_PREFIX".to_owned(),
            prefix.clone(),
        )]))
        .expect("inventory configuration");
        let checkout = CheckoutConfig::from_vars(&BTreeMap::from([(
            "BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        )]))
        .expect("checkout configuration");
        let mut edge = EdgeConfig::defaults(SocketAddr::from(([127, 0, 0, 1], 0)));
        edge.admin_listen = None;
        edge.access_log = false;
        let accounts = AccountsConfig {
            social: SocialLoginConfig {
                providers: vec![OidcProviderConfig {
                    name: "local".into(),
                    issuer: provider.issuer.clone(),
                    client_id: CLIENT_ID.into(),
                    client_secret: Secret::new(CLIENT_SECRET),
                }],
                redirect_uris: vec![REDIRECT_URI.into()],
                jwks_min_refetch,
                ..SocialLoginConfig::default()
            },
            ..AccountsConfig::development()
        };
        let shutdown = Shutdown::new();
        let system = System::start_with_accounts(
            &config,
            SystemOptions {
                edge,
                tokens,
                inventory,
                checkout,
                demo_data: false,
                notify: None,
                webhooks: boxoffice::WebhooksConfig::development(),
            },
            accounts,
            shutdown.clone(),
        )
        .await
        .expect("starting the system");
        let edge = connect(system.edge_addr).await;
        Self {
            db,
            system,
            shutdown,
            prefix,
            edge,
            provider,
        }
    }

    fn accounts(&self) -> AccountsServiceClient<Channel> {
        AccountsServiceClient::new(self.edge.clone())
    }

    async fn start_login(&self) -> pb::StartSocialLoginResponse {
        self.accounts()
            .start_social_login(pb::StartSocialLoginRequest {
                provider: "local".into(),
                redirect_uri: REDIRECT_URI.into(),
            })
            .await
            .expect("starting a social login")
            .into_inner()
    }

    async fn finish(&self, state: &str, code: &str) -> Result<Finished, tonic::Status> {
        self.accounts()
            .finish_social_login(pb::FinishSocialLoginRequest {
                state: state.into(),
                code: code.into(),
            })
            .await
            .map(|answer| answer.into_inner().result.expect("a result"))
    }

    /// A whole login as `account` at the provider: start, the browser's
    /// trip, finish.
    async fn social_login(&self, account: &Account) -> Result<Finished, tonic::Status> {
        let started = self.start_login().await;
        let code = browse(&started.authorization_url, account).await;
        self.finish(&started.state, &code).await
    }

    async fn register(&self, who: &str) -> (String, String) {
        let email = format!("{who}-{}@example.com", Uuid::new_v4().simple());
        self.accounts()
            .register(pb::RegisterRequest {
                email: email.clone(),
                password: PASSWORD.into(),
                display_name: who.into(),
            })
            .await
            .expect("registering");
        let token = self
            .accounts()
            .login(pb::LoginRequest {
                email: email.clone(),
                password: PASSWORD.into(),
            })
            .await
            .expect("logging in")
            .into_inner()
            .access_token;
        (email, token)
    }

    async fn users_with_email(&self, email: &str) -> i64 {
        let client = self.db.pool.get().await.expect("a connection");
        client
            .query_one(
                "SELECT count(*) FROM accounts.users WHERE email_key = $1",
                &[&email],
            )
            .await
            .expect("counting users")
            .get(0)
    }

    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.system.wait())
            .await
            .expect("the system stops within its grace period")
            .expect("the system stops cleanly");
        delete_redis_keys(&redis_url(), &self.prefix).await;
        drop(self.provider);
        drop(self.db);
    }
}

/// Someone with an account at the provider.
struct Account {
    subject: String,
    email: String,
    email_verified: bool,
}

impl Account {
    fn new(who: &str) -> Self {
        Self::with_email(&format!("{who}-{}@example.com", Uuid::new_v4().simple()))
    }

    fn with_email(email: &str) -> Self {
        Self {
            subject: format!("sub-{}", Uuid::new_v4().simple()),
            email: email.to_owned(),
            email_verified: true,
        }
    }

    fn login_hint(&self) -> String {
        format!("{}|{}|{}", self.subject, self.email, self.email_verified)
    }
}

/// The browser's part: follows the provider's redirects from
/// `authorization_url` (with the provider's cookies) until it sends the
/// browser to the redirect URI, and returns the code it carries.
async fn browse(authorization_url: &str, account: &Account) -> String {
    let redirect = browse_to_redirect(authorization_url, account).await;
    let pairs: BTreeMap<String, String> = redirect.query_pairs().into_owned().collect();
    assert!(
        !pairs.contains_key("error"),
        "the provider answered an error: {:?}",
        pairs.get("error")
    );
    pairs.get("code").expect("a code in the redirect").clone()
}

async fn browse_to_redirect(authorization_url: &str, account: &Account) -> reqwest::Url {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an http client");
    let mut url = reqwest::Url::parse(authorization_url).expect("an authorization URL");
    url.query_pairs_mut()
        .append_pair("login_hint", &account.login_hint());
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..12 {
        let mut request = http.get(url.clone());
        if !cookies.is_empty() {
            let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", header.join("; "));
        }
        let response = request.send().await.expect("calling the provider");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().expect("a cookie");
            if let Some((name, value)) = set.split(';').next().and_then(|c| c.split_once('=')) {
                cookies.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        assert!(
            response.status().is_redirection(),
            "the provider answered {} at {}",
            response.status(),
            url.path()
        );
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .expect("a redirect location");
        url = url.join(location).expect("a redirect URL");
        if url.as_str().starts_with(REDIRECT_URI) {
            return url;
        }
    }
    panic!("the provider never sent the browser back");
}

fn login_of(finished: Finished) -> pb::LoginResponse {
    match finished {
        Finished::Login(login) => login,
        Finished::LinkRequired(_) => panic!("expected a session, got link_required"),
    }
}

fn link_of(finished: Finished) -> pb::LinkRequired {
    match finished {
        Finished::LinkRequired(link) => link,
        Finished::Login(_) => panic!("expected link_required, got a session"),
    }
}

fn assert_reason(status: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

async fn get_me(world: &World, token: &str) -> pb::User {
    world
        .accounts()
        .get_me(with_token(token, pb::GetMeRequest {}))
        .await
        .expect("GetMe")
        .into_inner()
}

async fn identities(world: &World, token: &str) -> Vec<pb::SocialIdentity> {
    world
        .accounts()
        .list_social_identities(with_token(token, pb::ListSocialIdentitiesRequest {}))
        .await
        .expect("listing identities")
        .into_inner()
        .identities
}

#[tokio::test]
async fn a_first_social_login_creates_the_account_and_the_next_logs_into_it() {
    let world = World::start(Signing::Published).await;
    let providers = world
        .accounts()
        .list_social_providers(pb::ListSocialProvidersRequest {})
        .await
        .expect("listing providers")
        .into_inner()
        .providers;
    assert_eq!(providers, vec!["local".to_owned()]);

    let ada = Account::new("ada");
    let first = login_of(
        world
            .social_login(&ada)
            .await
            .expect("a first social login"),
    );
    let user = first.user.clone().expect("the user");
    assert_eq!(user.email, ada.email);
    assert!(user.email_verified, "the provider verified the email");
    assert!(!first.refresh_token.is_empty() && !first.session_id.is_empty());
    // The session is a session like a password login's.
    let me = get_me(&world, &first.access_token).await;
    assert_eq!(me.id, user.id);
    let refreshed = world
        .accounts()
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .expect("refreshing a social session")
        .into_inner();
    assert_eq!(get_me(&world, &refreshed.access_token).await.id, user.id);

    let second = login_of(
        world
            .social_login(&ada)
            .await
            .expect("a second social login"),
    );
    assert_eq!(second.user.expect("the user").id, user.id, "same account");
    assert_ne!(second.session_id, first.session_id, "a session of its own");
    assert_eq!(world.users_with_email(&ada.email).await, 1);

    let linked = identities(&world, &second.access_token).await;
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].provider, "local");
    assert_eq!(linked[0].issuer, world.provider.issuer);
    assert_eq!(linked[0].subject, ada.subject);
    // The account has no password: its last identity stays.
    let kept = world
        .accounts()
        .unlink_social_identity(with_token(
            &second.access_token,
            pb::UnlinkSocialIdentityRequest {
                identity_id: linked[0].id.clone(),
            },
        ))
        .await
        .expect_err("unlinking the only way in");
    assert_reason(&kept, Code::FailedPrecondition, "LAST_LOGIN_METHOD");
    // Nor does any password log into it.
    let password = world
        .accounts()
        .login(pb::LoginRequest {
            email: ada.email.clone(),
            password: "!social-login".into(),
        })
        .await
        .expect_err("no password logs into a social account");
    assert_reason(&password, Code::Unauthenticated, "BAD_CREDENTIALS");

    // The export lists the identity.
    let export = world
        .accounts()
        .export_my_data(with_token(&second.access_token, pb::ExportMyDataRequest {}))
        .await
        .expect("exporting")
        .into_inner()
        .json;
    let export: serde_json::Value = serde_json::from_str(&export).expect("JSON");
    assert_eq!(
        export["social_identities"][0]["subject"].as_str(),
        Some(ada.subject.as_str())
    );

    // A provider that does not vouch for the email makes an unverified one.
    let bob = Account {
        email_verified: false,
        ..Account::new("bob")
    };
    let bob_login = login_of(world.social_login(&bob).await.expect("an unverified login"));
    assert!(!bob_login.user.expect("the user").email_verified);
    world.stop().await;
}

#[tokio::test]
async fn bad_states_replayed_nonces_and_reused_codes_are_refused() {
    let world = World::start(Signing::Published).await;
    let unknown = world
        .finish("no-such-state", "some-code")
        .await
        .expect_err("an unknown state");
    assert_reason(&unknown, Code::InvalidArgument, "SOCIAL_STATE_INVALID");
    for (provider, redirect_uri, field) in [
        ("nosuch", REDIRECT_URI, "provider"),
        ("local", "https://evil.example/steal", "redirect_uri"),
    ] {
        let refused = world
            .accounts()
            .start_social_login(pb::StartSocialLoginRequest {
                provider: provider.into(),
                redirect_uri: redirect_uri.into(),
            })
            .await
            .expect_err("an unconfigured provider or redirect");
        assert_reason(&refused, Code::InvalidArgument, "INVALID_FIELD");
        assert!(refused.message().contains(field), "{refused:?}");
    }

    // A good login, then its state again: states are single-use.
    let ada = Account::new("ada");
    let started = world.start_login().await;
    let code = browse(&started.authorization_url, &ada).await;
    login_of(
        world
            .finish(&started.state, &code)
            .await
            .expect("a good login"),
    );
    let again = world
        .finish(&started.state, &code)
        .await
        .expect_err("the same state twice");
    assert_reason(&again, Code::InvalidArgument, "SOCIAL_STATE_INVALID");

    // The spent code with another login's state: the provider refuses it
    // (spent, and bound to the first login's PKCE challenge).
    let other = world.start_login().await;
    let reused = world
        .finish(&other.state, &code)
        .await
        .expect_err("a reused code");
    assert_reason(&reused, Code::Unauthenticated, "SOCIAL_LOGIN_FAILED");

    // A nonce replayed from another login: the attacker sends the browser
    // to login D's authorization URL with login C's nonce. The code is
    // good (D's PKCE), the ID token is validly signed, but its nonce is
    // not D's.
    let eve = Account::new("eve");
    let login_c = world.start_login().await;
    let login_d = world.start_login().await;
    let nonce_of = |url: &str| {
        reqwest::Url::parse(url)
            .expect("a URL")
            .query_pairs()
            .find(|(name, _)| name == "nonce")
            .map(|(_, value)| value.into_owned())
            .expect("a nonce")
    };
    let mut tampered = reqwest::Url::parse(&login_d.authorization_url).expect("a URL");
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(name, value)| match name.as_ref() {
            "nonce" => (name.into_owned(), nonce_of(&login_c.authorization_url)),
            _ => (name.into_owned(), value.into_owned()),
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let code = browse(tampered.as_str(), &eve).await;
    let replayed = world
        .finish(&login_d.state, &code)
        .await
        .expect_err("a replayed nonce");
    assert_reason(&replayed, Code::Unauthenticated, "SOCIAL_LOGIN_FAILED");
    assert_eq!(world.users_with_email(&eve.email).await, 0, "nothing made");
    // The failed login spent its state too.
    let spent = world
        .finish(&login_d.state, &code)
        .await
        .expect_err("a failed login's state");
    assert_reason(&spent, Code::InvalidArgument, "SOCIAL_STATE_INVALID");
    world.stop().await;
}

#[tokio::test]
async fn an_id_token_signed_by_a_key_the_provider_does_not_publish_is_refused() {
    let world = World::start(Signing::Unpublished).await;
    let mallory = Account::new("mallory");
    let refused = world
        .social_login(&mallory)
        .await
        .expect_err("a token signed by an unpublished key");
    assert_reason(&refused, Code::Unauthenticated, "SOCIAL_LOGIN_FAILED");
    // Nothing leaks: no provider text, no token in the message.
    assert!(!refused.message().contains("eyJ"), "{refused:?}");
    assert_eq!(world.users_with_email(&mallory.email).await, 0);
    // Again, within the refetch bound: still refused, still nothing made.
    let again = world.social_login(&mallory).await.expect_err("again");
    assert_reason(&again, Code::Unauthenticated, "SOCIAL_LOGIN_FAILED");
    world.stop().await;
}

#[tokio::test]
async fn linking_to_a_password_account_needs_its_owners_proof() {
    let world = World::start(Signing::Published).await;
    let (ada_email, ada_token) = world.register("ada").await;
    let (_, bob_token) = world.register("bob").await;
    let ada_at_provider = Account::with_email(&ada_email);

    let link = link_of(
        world
            .social_login(&ada_at_provider)
            .await
            .expect("a login with an account's email"),
    );
    assert_eq!(link.email, ada_email);
    assert_eq!(link.provider, "local");
    assert!(
        identities(&world, &ada_token).await.is_empty(),
        "nothing linked yet"
    );

    let link_with = |token: Option<&str>, password: &str| {
        let message = pb::LinkSocialLoginRequest {
            link_token: link.link_token.clone(),
            password: password.into(),
        };
        let request = match token {
            Some(token) => with_token(token, message),
            None => tonic::Request::new(message),
        };
        let mut accounts = world.accounts();
        async move { accounts.link_social_login(request).await }
    };
    // No proof, another user's token, another user's password, a wrong one.
    let refused = link_with(None, "").await.expect_err("no proof");
    assert_reason(&refused, Code::PermissionDenied, "LINK_PROOF_REQUIRED");
    let refused = link_with(Some(&bob_token), "")
        .await
        .expect_err("bob's token");
    assert_reason(&refused, Code::PermissionDenied, "LINK_PROOF_REQUIRED");
    let refused = link_with(Some(&bob_token), "wrong password!")
        .await
        .expect_err("bob with a wrong password");
    assert_reason(&refused, Code::PermissionDenied, "WRONG_PASSWORD");
    assert!(
        identities(&world, &ada_token).await.is_empty(),
        "still nothing linked"
    );
    assert!(identities(&world, &bob_token).await.is_empty());

    // The password proves it: a session of ada's account.
    let linked = link_with(None, PASSWORD)
        .await
        .expect("linking with the password")
        .into_inner();
    assert_eq!(linked.user.expect("the user").email, ada_email);
    let spent = link_with(None, PASSWORD)
        .await
        .expect_err("a spent link token");
    assert_reason(&spent, Code::InvalidArgument, "TOKEN_INVALID");
    // From now on the identity logs straight in.
    let direct = login_of(
        world
            .social_login(&ada_at_provider)
            .await
            .expect("logging in"),
    );
    assert_eq!(get_me(&world, &direct.access_token).await.email, ada_email);

    // A second identity with the same email, proven by ada's access token.
    let ada_elsewhere = Account::with_email(&ada_email);
    let link = link_of(world.social_login(&ada_elsewhere).await.expect("a login"));
    world
        .accounts()
        .link_social_login(with_token(
            &ada_token,
            pb::LinkSocialLoginRequest {
                link_token: link.link_token.clone(),
                password: String::new(),
            },
        ))
        .await
        .expect("linking with ada's own token");
    let ada_identities = identities(&world, &ada_token).await;
    assert_eq!(ada_identities.len(), 2);

    // Bob cannot see or unlink ada's identities; ada can (she has a password).
    assert!(identities(&world, &bob_token).await.is_empty());
    let bola = world
        .accounts()
        .unlink_social_identity(with_token(
            &bob_token,
            pb::UnlinkSocialIdentityRequest {
                identity_id: ada_identities[0].id.clone(),
            },
        ))
        .await
        .expect_err("bob unlinking ada's identity");
    assert_eq!(bola.code(), Code::NotFound, "{bola:?}");
    assert_eq!(identities(&world, &ada_token).await.len(), 2);
    let anonymous = world
        .accounts()
        .list_social_identities(pb::ListSocialIdentitiesRequest {})
        .await
        .expect_err("listing without a login");
    assert_reason(&anonymous, Code::Unauthenticated, "LOGIN_REQUIRED");
    world
        .accounts()
        .unlink_social_identity(with_token(
            &ada_token,
            pb::UnlinkSocialIdentityRequest {
                identity_id: ada_identities[0].id.clone(),
            },
        ))
        .await
        .expect("ada unlinking her own identity");
    let left = identities(&world, &ada_token).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].subject, ada_elsewhere.subject);
    // The unlinked identity no longer logs in: it is offered a link again.
    link_of(world.social_login(&ada_at_provider).await.expect("a login"));
    world.stop().await;
}

#[tokio::test]
async fn erasing_an_account_erases_its_identities() {
    let world = World::start(Signing::Published).await;
    let (email, token) = world.register("gone").await;
    let at_provider = Account::with_email(&email);
    let link = link_of(world.social_login(&at_provider).await.expect("a login"));
    world
        .accounts()
        .link_social_login(with_token(
            &token,
            pb::LinkSocialLoginRequest {
                link_token: link.link_token,
                password: String::new(),
            },
        ))
        .await
        .expect("linking");
    let user_id: Uuid = get_me(&world, &token).await.id.parse().expect("a user id");
    world
        .accounts()
        .delete_account(with_token(
            &token,
            pb::DeleteAccountRequest {
                password: PASSWORD.into(),
            },
        ))
        .await
        .expect("deleting the account");
    let client = world.db.pool.get().await.expect("a connection");
    let left: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM accounts.social_identities WHERE user_id = $1 OR subject = $2)
                  + (SELECT count(*) FROM accounts.social_link_offers WHERE user_id = $1 OR subject = $2)",
            &[&user_id, &at_provider.subject],
        )
        .await
        .expect("counting")
        .get(0);
    assert_eq!(
        left, 0,
        "no identity or offer of the erased account is kept"
    );
    // The identity logs in afresh: a new account, not the erased one.
    let fresh = login_of(world.social_login(&at_provider).await.expect("a login"));
    assert_ne!(fresh.user.expect("the user").id, user_id.to_string());
    world.stop().await;
}

#[tokio::test]
async fn rotated_keys_are_fetched_again_but_no_more_often_than_the_bound() {
    // No bound: a token naming a key accounts has not seen fetches the
    // provider's keys again, and the rotated key is accepted.
    let mut world = World::start_with(Signing::Published, Duration::ZERO).await;
    let ada = Account::new("ada");
    login_of(world.social_login(&ada).await.expect("a login"));
    world.provider.rotate_keys().await;
    let rotated = login_of(
        world
            .social_login(&ada)
            .await
            .expect("a login signed by the rotated key"),
    );
    assert_eq!(rotated.user.expect("the user").email, ada.email);
    world.stop().await;

    // Keys fetched moments ago are not fetched again, whatever key id a
    // token names: the rotated key stays unknown, and the login refused.
    let mut world = World::start_with(Signing::Published, Duration::from_secs(3600)).await;
    login_of(world.social_login(&ada).await.expect("a login"));
    world.provider.rotate_keys().await;
    let refused = world
        .social_login(&ada)
        .await
        .expect_err("a key unknown within the bound");
    assert_reason(&refused, Code::Unauthenticated, "SOCIAL_LOGIN_FAILED");
    world.stop().await;
}

#[tokio::test]
async fn expired_states_and_expired_codes_are_refused() {
    // This provider's authorization codes live one second.
    let provider = OpenIdProvider::start_at(Signing::Published, None, 1).await;
    let world =
        World::start_with_provider(provider, SocialLoginConfig::default().jwks_min_refetch).await;
    let ada = Account::new("ada");

    // A state past its lifetime is refused before the provider is asked,
    // even with a good code.
    let started = world.start_login().await;
    let code = browse(&started.authorization_url, &ada).await;
    world
        .db
        .client()
        .await
        .execute(
            "UPDATE accounts.social_login_states SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .expect("ageing the state");
    let expired_state = world
        .finish(&started.state, &code)
        .await
        .expect_err("an expired state");
    assert_reason(
        &expired_state,
        Code::InvalidArgument,
        "SOCIAL_STATE_INVALID",
    );

    // A code the provider no longer honours: the exchange fails and the
    // login with it. (Waiting out the code's one-second life is the test.)
    let started = world.start_login().await;
    let code = browse(&started.authorization_url, &ada).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let expired_code = world
        .finish(&started.state, &code)
        .await
        .expect_err("an expired code");
    assert_reason(&expired_code, Code::Unauthenticated, "SOCIAL_LOGIN_FAILED");

    // Neither created an account; a fresh login right away does.
    assert_eq!(world.users_with_email(&ada.email).await, 0);
    login_of(world.social_login(&ada).await.expect("a fresh login"));
    assert_eq!(world.users_with_email(&ada.email).await, 1);
    world.stop().await;
}
