// Login: paste a bearer token (from `skiff dashboard`). It is checked
// with a SelfSubjectReview; a refused token shows the API's message and
// is not kept.
import { ApiError, setToken, whoami } from "../api";
import { h } from "../dom";
import { base, navigate, route } from "../router";

route("/login", "Log in", (ctx) => {
  const msg = h("p", { id: "login-error", class: "error", role: "alert" });
  const pending = sessionStorage.getItem("skiff.loginMessage");
  if (pending) {
    msg.textContent = pending;
    sessionStorage.removeItem("skiff.loginMessage");
  }
  const input = h("textarea", {
    id: "token",
    rows: 4,
    autocomplete: "off",
    spellcheck: "false",
    "aria-label": "Bearer token",
    placeholder: "Paste a bearer token (skiff dashboard prints one)",
  });
  const submit = h("button", { type: "submit", id: "login" }, "Log in");
  const form = h(
    "form",
    { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Skiff"),
    h("label", { for: "token" }, "Bearer token"),
    input,
    submit,
    msg,
    h("p", { class: "hint" }, "The token is kept in this tab's session storage only, and sent to the API as an Authorization header."),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) {
      msg.textContent = "Paste a token first.";
      return;
    }
    submit.disabled = true;
    msg.textContent = "";
    setToken(t);
    whoami().then(
      () => {
        const next = ctx.query.get("next");
        navigate(next && next.startsWith(base + "/") && !next.startsWith(base + "/login") ? next : base + "/");
      },
      (err: unknown) => {
        setToken(null);
        submit.disabled = false;
        if (err instanceof ApiError && err.code === 401) {
          msg.textContent = "The API refused this token (401 " + (err.reason || "Unauthorized") + "): " + err.message + ". Check that it is complete and not expired.";
        } else {
          msg.textContent = "Could not check the token: " + (err as Error).message;
        }
        input.focus();
      },
    );
  });
  queueMicrotask(() => input.focus());
  return { el: h("section", { class: "login-page" }, form) };
}, { public: true });
