// Sign-in form (OAuth2 password flow against /auth/token).
import { html } from "../util.js";

export function render(root, ctx) {
  const el = html(`<form class="panel login" id="login-form">
      <h1>Sign in</h1>
      <label for="login-user">User name</label>
      <input id="login-user" name="username" autocomplete="username" required>
      <label for="login-password">Password</label>
      <input id="login-password" name="password" type="password" autocomplete="current-password" required>
      <button class="primary" type="submit">Sign in</button>
      <p class="error" id="login-error" role="alert"></p>
    </form>`);
  root.append(el);
  el.onsubmit = async (ev) => {
    ev.preventDefault();
    const err = el.querySelector("#login-error");
    err.textContent = "";
    try {
      const user = await ctx.api.signIn(el.username.value.trim(), el.password.value);
      ctx.onSignedIn(user);
    } catch (e) {
      err.textContent = e.status === 401 ? "Wrong user name or password." : e.message;
    }
  };
  el.querySelector("#login-user").focus();
  return null;
}
