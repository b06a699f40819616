// The token owner's webhooks and what was delivered to each (the API's delivery log).

import { api } from "./api.js";
import { el, setText, show } from "./dom.js";

const SHOWN = 10; // deliveries per webhook

export class Webhooks {
  constructor() {
    this.list = document.getElementById("webhook-list");
    this.empty = document.getElementById("webhooks-empty");
    this.error = document.getElementById("webhooks-error");
    document.getElementById("webhooks-refresh").addEventListener("click", () => this.reload());
  }

  async reload() {
    show(this.error, false);
    let hooks;
    try {
      hooks = (await api.get("v1/webhooks")).webhooks;
    } catch (err) {
      this.list.replaceChildren();
      show(this.empty, false);
      setText(this.error, err.message);
      show(this.error, err.field !== "token"); // no token: nothing of the owner's to show
      return;
    }
    const items = await Promise.all(hooks.map((hook) => this.item(hook)));
    this.list.replaceChildren(...items);
    show(this.empty, hooks.length === 0);
  }

  async item(hook) {
    let rows;
    try {
      const log = await api.get(`v1/webhooks/${hook.id}/deliveries?limit=${SHOWN}`);
      rows = log.deliveries.map((d) =>
        el("tr", { "data-state": d.state }, [
          el("td", { text: d.event_type }),
          el("td", { text: d.state }),
          el("td", { text: String(d.attempts) }),
          el("td", { text: d.last_error || (d.last_status ? `HTTP ${d.last_status}` : "") }),
          el("td", { text: new Date(d.created_at).toLocaleString() }),
        ]),
      );
    } catch (err) {
      rows = [el("tr", {}, [el("td", { colspan: 5, class: "error", text: err.message })])];
    }
    const table = el("table", { class: "deliveries" }, [
      el("thead", {}, [
        el("tr", {}, ["Event", "State", "Tries", "Last answer", "Queued"].map((h) =>
          el("th", { scope: "col", text: h }),
        )),
      ]),
      el("tbody", {}, rows.length ? rows : [
        el("tr", {}, [el("td", { colspan: 5, class: "muted", text: "Nothing delivered yet." })]),
      ]),
    ]);
    return el("li", { class: "webhook", "data-id": hook.id }, [
      el("p", {}, [el("code", { text: hook.url })]),
      el("p", { class: "muted", text: hook.event_types.join(", ") }),
      table,
    ]);
  }
}
