// A real OpenID Provider (the certified `oidc-provider`) for boxoffice's
// social-login tests, one process per test world.
//
// Environment:
//   PORT            port to listen on (0: any free one)
//   ISSUER          the issuer identifier (default http://127.0.0.1:<port>)
//   CLIENT_ID       the one registered client (confidential, client_secret_basic)
//   CLIENT_SECRET   its secret
//   REDIRECT_URIS   the client's redirect URIs, comma-separated
//   SIGNING         "published" (default): ID tokens are signed with the key
//                   served at jwks_uri. "unpublished": they are signed with a
//                   key of this process that jwks_uri does not list (it lists
//                   another key of this process instead): real signatures by
//                   a key the relying party cannot know.
//   CODE_TTL_SECS   how long an authorization code lives (default 60)
//
// Logging in needs no form: the authorization request's `login_hint` is
// `<subject>|<email>|<email_verified>`, and this provider's interaction
// handler (oidc-provider's interaction API) logs that account in and grants
// the requested scopes. Once listening it prints one line to stdout:
// `listening <issuer> <base url>`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name, fallback) => process.env[name] ?? fallback;

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(8).toString('hex'),
    alg: 'RS256',
    use: 'sig',
  };
}

function publicPart(jwk) {
  const { kty, n, e, kid, alg, use } = jwk;
  return { kty, n, e, kid, alg, use };
}

const signing = env('SIGNING', 'published');
if (!['published', 'unpublished'].includes(signing)) {
  console.error(`SIGNING must be published or unpublished, not ${signing}`);
  process.exit(64);
}
const signWith = signingKey();
// What jwks_uri serves when the signing key is kept unpublished.
const decoy = signingKey();

// Subjects this provider has seen, with the email they logged in with.
const accounts = new Map();

let provider;
const server = http.createServer(async (req, res) => {
  try {
    const path = req.url.split('?')[0];
    if (signing === 'unpublished' && path === '/jwks') {
      res.setHeader('Content-Type', 'application/jwk-set+json');
      res.end(JSON.stringify({ keys: [publicPart(decoy)] }));
      return;
    }
    if (req.method === 'GET' && path.startsWith('/interaction/')) {
      await interact(req, res);
      return;
    }
    provider.callback()(req, res);
  } catch (error) {
    console.error('provider error', error);
    res.statusCode = 500;
    res.end();
  }
});

// Finishes whatever the provider asks for: login as the hinted account,
// then consent to every requested scope and claim.
async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const [subject, email, verified] = String(params.login_hint ?? '').split('|');
    if (!subject) {
      await provider.interactionFinished(req, res, {
        error: 'login_required',
        error_description: 'the test passes the account as login_hint',
      });
      return;
    }
    accounts.set(subject, { email, email_verified: verified === 'true' });
    await provider.interactionFinished(req, res, { login: { accountId: subject } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) {
      grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    }
    if (prompt.details.missingOIDCClaims) {
      grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    }
    const grantId = await grant.save();
    await provider.interactionFinished(
      req,
      res,
      { consent: details.grantId ? {} : { grantId } },
      { mergeWithLastSubmission: true },
    );
    return;
  }
  res.statusCode = 400;
  res.end(`unexpected prompt ${prompt.name}`);
}

server.listen(Number(env('PORT', '0')), '127.0.0.1', () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const issuer = env('ISSUER', base);
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: env('CLIENT_ID', 'boxoffice-test'),
        client_secret: env('CLIENT_SECRET', 'boxoffice-test-secret'),
        redirect_uris: env('REDIRECT_URIS', 'http://127.0.0.1/callback').split(','),
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [signWith] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    features: { devInteractions: { enabled: false } },
    pkce: { required: () => true },
    ttl: { AuthorizationCode: Number(env('CODE_TTL_SECS', '60')) },
    async findAccount(ctx, id) {
      const account = accounts.get(id);
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: account.email || undefined,
            email_verified: account.email_verified,
            name: account.email ? account.email.split('@')[0] : undefined,
          };
        },
      };
    },
  });
  // No stack traces or request details on the console: tests read stdout.
  provider.on('server_error', (ctx, error) => console.error('server_error', error.message));
  process.stdout.write(`listening ${issuer} ${base}\n`);
});

// The test harness ends this process when its world ends; closing stdin
// (the harness went away) ends it too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
