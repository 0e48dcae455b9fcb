// User sign-in with pusher-js (signed by the official SDK's authenticateUser), delivery to
// #server-to-user-{id} with the SDK's sendToUser, and termination.
'use strict';
const { client, server, connected, once, run, assert, sleep } = require('./lib');

run(async () => {
  const p = client({ signinAs: { id: 'user-42', user_info: { name: 'Quinn' } } });
  await connected(p);
  const signedIn = once(p.connection, 'message').then(() => {});
  p.signin();
  await signedIn;
  await sleep(300);
  assert.strictEqual(p.user.user_data && p.user.user_data.id, 'user-42', 'signed in');
  // Two connections as the same user both get user events.
  const p2 = client({ signinAs: { id: 'user-42' } });
  await connected(p2);
  p2.signin();
  await sleep(300);
  const got1 = once(p.user, 'notice');
  const got2 = once(p2.user, 'notice');
  await server.sendToUser('user-42', 'notice', { text: 'hi' });
  assert.deepStrictEqual((await got1).data, { text: 'hi' });
  assert.deepStrictEqual((await got2).data, { text: 'hi' });
  p.disconnect();
  p2.disconnect();
});
