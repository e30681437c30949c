// A real OpenID Provider for Key Portal's single sign-on tests: panva's oidc-provider (an
// OpenID-certified implementation) with its development log-in pages, on plain HTTP.
//
//   node provider.js --port 4000 --issuer http://127.0.0.1:4000 \
//     --client-id key-portal --client-secret SECRET \
//     --redirect-uri http://127.0.0.1:8000/accounts/oidc/sso/login/callback/ \
//     --accounts accounts.json [--faults faults.json]
//
// accounts.json maps a log-in name (what is typed on the provider's log-in page, any
// password) to that person's claims: {"erin": {"sub": "...", "email": "...",
// "email_verified": true, "preferred_username": "erin", "name": "Erin", "groups": [...]}}.
// It is read again at every look-up, so a test changes someone's groups between log-ins by
// rewriting it. faults.json, read at every token request, may say {"token_status": 500}: the
// token endpoint then answers that status with a garbage body.
//
// Scopes: openid, email (email, email_verified), profile (name, preferred_username) and
// groups (groups), as Okta names them. The client is first-party: no consent page.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    accounts: { type: 'string' },
    faults: { type: 'string' },
  },
});
for (const name of ['port', 'issuer', 'client-id', 'client-secret', 'redirect-uri', 'accounts']) {
  if (!args[name]) {
    process.stderr.write(`provider.js: --${name} is required\n`);
    process.exit(2);
  }
}

function readJson(path, fallback) {
  if (!path) return fallback;
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    if (error.code === 'ENOENT') return fallback;
    throw error;
  }
}

const provider = new Provider(args.issuer, {
  clients: [
    {
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      redirect_uris: args['redirect-uri'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    const claims = readJson(args.accounts, {})[id];
    if (!claims) return undefined;
    return {
      accountId: id,
      async claims() {
        // Read again: the groups may have changed since the person logged in here.
        const now = readJson(args.accounts, {})[id] || claims;
        return { ...now, sub: now.sub || id };
      },
    };
  },
  // A first-party client, as a company's own portal is: grant what it asks for, no consent.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
  pkce: { required: () => false, methods: ['S256'] },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['key-portal-test-provider-cookie-key'] },
});

// The token endpoint's faults, for the tests of a provider that answers garbage.
provider.use(async (ctx, next) => {
  const status = ctx.path === '/token' ? readJson(args.faults, {}).token_status : undefined;
  if (status) {
    ctx.status = status;
    ctx.type = 'text/html';
    ctx.body = '<html><body>Internal error (a test fault)</body></html>';
    return;
  }
  await next();
});

provider.listen(Number(args.port), '127.0.0.1', () => {
  process.stdout.write(`oidc-provider listening on ${args.issuer}\n`);
});
