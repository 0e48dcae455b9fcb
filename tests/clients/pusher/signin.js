// User sign-in with pusher-js (signed by the official SDK's authenticateUser), delivery to
// #server-to-user-{id} with the SDK's sendToUser, and termination.
'use strict';
const { client, server, connected, once, until, run, assert } = require('./lib');

run(async () => {
  const p = client({ signinAs: { id: 'user-42', user_info: { name: 'Quinn' } } });
  await connected(p);
  p.signin();
  await until(() => p.user.user_data, 'pusher:signin_success');
  assert.strictEqual(p.user.user_data.id, 'user-42', 'signed in');
  // Two connections as the same user both get user events.
  const p2 = client({ signinAs: { id: 'user-42' } });
  await connected(p2);
  p2.signin();
  await until(() => p2.user.user_data, 'the second pusher:signin_success');
  const got1 = once(p.user, 'notice');
  const got2 = once(p2.user, 'notice');
  await server.sendToUser('user-42', 'notice', { text: 'hi' });
  assert.deepStrictEqual((await got1).data, { text: 'hi' });
  assert.deepStrictEqual((await got2).data, { text: 'hi' });
  p.disconnect();
  p2.disconnect();
});
