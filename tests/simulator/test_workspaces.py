"""Contract: workspace reads (the API's JSON:API conventions and the workspaces API)."""

from __future__ import annotations

import re

from tests.support.simulator import ADMIN_TOKEN, ORG_TOKEN, READ_TOKEN, USER_TOKEN


def test_workspace_ids_are_ws_and_16_base62_chars(simulator):
    """Reference 1.4: `ws-6jrRyVDv1J8zQMB5`."""
    with simulator.client() as api:
        body = api.get("organizations/demo/workspaces").json()
    assert body["data"]
    assert all(re.fullmatch(r"ws-[0-9A-Za-z]{16}", ws["id"]) for ws in body["data"])


def test_list_paginates_with_default_size_20_and_meta(simulator):
    """Reference 0 "Pagination": default page[size] 20, meta.pagination with totals."""
    total = len(simulator.state("demo")["organizations"]["demo"])
    with simulator.client() as api:
        body = api.get("organizations/demo/workspaces").json()
    assert len(body["data"]) == 20
    assert body["meta"]["pagination"] == {
        "current-page": 1,
        "page-size": 20,
        "prev-page": None,
        "next-page": 2,
        "total-pages": -(-total // 20),
        "total-count": total,
    }
    assert body["links"]["prev"] is None
    assert "page%5Bnumber%5D=2" in body["links"]["next"]


def test_page_size_is_capped_at_100(start_simulator):
    """Reference 0: page[size] max 100."""
    yaml_text = """
organizations:
  big:
    teams: [{name: owners, tokens: [t], access: admin}]
    workspaces: [{generate: {count: 150, name: "w{n:03d}"}}]
"""
    with start_simulator(scenario=yaml_text) as sim, sim.client("t") as api:
        body = api.get("organizations/big/workspaces", params={"page[size]": 500}).json()
    assert len(body["data"]) == 100
    assert body["meta"]["pagination"]["total-pages"] == 2


def test_pages_cover_every_workspace_once(simulator):
    """Reference 0: follow next-page until null."""
    names: list[str] = []
    page = 1
    with simulator.client() as api:
        while page is not None:
            body = api.get(
                "organizations/demo/workspaces", params={"page[size]": 7, "page[number]": page}
            ).json()
            names += [ws["attributes"]["name"] for ws in body["data"]]
            page = body["meta"]["pagination"]["next-page"]
    assert len(names) == len(set(names)) == body["meta"]["pagination"]["total-count"]


def test_include_puts_current_run_locked_by_and_project_in_included(simulator):
    """Reference 1.1 include=current_run,locked_by,project; 1.2 locked-by is polymorphic."""
    with simulator.client() as api:
        body = api.get(
            "organizations/demo/workspaces",
            params={"page[size]": 100, "include": "current_run,locked_by,project"},
        ).json()
    included = {(item["type"], item["id"]): item for item in body["included"]}
    by_name = {ws["attributes"]["name"]: ws for ws in body["data"]}
    holder = by_name["legacy-network"]["relationships"]["locked-by"]["data"]
    assert holder["type"] == "users"
    assert included[("users", holder["id"])]["attributes"]["username"] == "bob"
    team = by_name["analytics-dev"]["relationships"]["locked-by"]["data"]
    assert included[("teams", team["id"])]["attributes"]["name"] == "developers"
    run_ref = by_name["payments-prod"]["relationships"]["locked-by"]["data"]
    assert run_ref["type"] == "runs"
    assert by_name["payments-prod"]["relationships"]["current-run"]["data"] == run_ref
    assert included[("runs", run_ref["id"])]["attributes"]["status"] == "applying"
    project = by_name["prod-core"]["relationships"]["project"]["data"]
    assert included[("projects", project["id"])]["attributes"]["name"] == "platform"


def test_unlocked_workspace_has_locked_by_data_null(simulator):
    """Reference 1.4: be ready for `locked-by` with `data: null`."""
    with simulator.client() as api:
        ws = api.get("organizations/demo/workspaces/terraform-local").json()["data"]
    assert ws["attributes"]["locked"] is False
    assert ws["attributes"]["execution-mode"] == "local"
    assert ws["relationships"]["locked-by"] == {"data": None}


def test_show_by_id_and_by_name_agree(simulator):
    """Reference 1.1 "Show": GET /workspaces/:id and /organizations/:org/workspaces/:name."""
    with simulator.client() as api:
        by_name = api.get("organizations/demo/workspaces/prod-core").json()["data"]
        by_id = api.get(f"workspaces/{by_name['id']}").json()["data"]
    assert by_id == by_name
    assert by_name["attributes"]["locked-reason"] == "maintenance: do not unlock"
    assert by_name["attributes"]["tag-names"] == ["prod", "protected"]


def test_show_supports_include(simulator):
    """Reference 1.1: include works on show as on list."""
    with simulator.client() as api:
        body = api.get(
            "organizations/demo/workspaces/billing-staging", params={"include": "current_run"}
        ).json()
    assert body["included"][0]["attributes"]["status"] == "planned"


def test_search_name_wildcard_tags_and_project_filters(simulator):
    """Reference 1.1 query parameters."""
    with simulator.client() as api:

        def names(**params: str) -> set[str]:
            body = api.get(
                "organizations/demo/workspaces", params={"page[size]": 100, **params}
            ).json()
            return {ws["attributes"]["name"] for ws in body["data"]}

        assert names(**{"search[name]": "NETWORK"}) == {"legacy-network"}
        assert names(**{"search[wildcard-name]": "*-staging"}) == {"billing-staging"}
        assert names(**{"search[wildcard-name]": "payments-*"}) == {"payments-prod"}
        assert names(**{"search[wildcard-name]": "*core*"}) == {"prod-core"}
        assert names(**{"search[tags]": "prod,protected"}) == {"prod-core"}
        project = api.get("organizations/demo/workspaces/billing-staging").json()["data"][
            "relationships"
        ]["project"]["data"]["id"]
        assert names(**{"filter[project][id]": project}) == {"payments-prod", "billing-staging"}
        assert names(**{"filter[current-run][status]": "applying,planned"}) == {
            "payments-prod",
            "billing-staging",
        }


def test_permissions_follow_the_calling_token(simulator):
    """Reference 1.2: permissions reflect the calling token; force-unlock needs admin."""

    def permissions(token: str) -> dict[str, bool]:
        with simulator.client(token) as api:
            return api.get("organizations/demo/workspaces/web-dev").json()["data"]["attributes"][
                "permissions"
            ]

    admin, write, read, org = (
        permissions(t) for t in (ADMIN_TOKEN, USER_TOKEN, READ_TOKEN, ORG_TOKEN)
    )
    assert (admin["can-lock"], admin["can-unlock"], admin["can-force-unlock"]) == (True,) * 3
    assert (write["can-lock"], write["can-unlock"], write["can-force-unlock"]) == (
        True,
        True,
        False,
    )
    assert (read["can-lock"], read["can-unlock"], read["can-force-unlock"]) == (False,) * 3
    assert read["can-read-run"] is True
    assert org["can-force-unlock"] is True
    assert org["can-queue-run"] is False


def test_missing_or_unknown_token_is_401(simulator):
    """Reference 0: 401 is reserved for problems with the token."""
    with simulator.client(None) as anonymous, simulator.client("nope") as unknown:
        assert anonymous.get("organizations/demo/workspaces").status_code == 401
        response = unknown.get("organizations/demo/workspaces")
    assert response.status_code == 401
    assert response.json()["errors"][0]["status"] == "401"


def test_what_the_token_may_not_see_is_404(start_simulator):
    """Reference 0: forbidden requests with a valid token get 404, not 403."""
    yaml_text = """
organizations:
  acme:
    users: [{name: dev, tokens: [dev-token], access: {"dev-*": write}}]
    workspaces: [{name: dev-app}, {name: prod-app}]
  other:
    workspaces: [{name: secret}]
"""
    with start_simulator(scenario=yaml_text) as sim, sim.client("dev-token") as api:
        listed = api.get("organizations/acme/workspaces").json()
        assert [ws["attributes"]["name"] for ws in listed["data"]] == ["dev-app"]
        assert listed["meta"]["pagination"]["total-count"] == 1
        assert api.get("organizations/acme/workspaces/prod-app").status_code == 404
        prod_id = sim.workspace("prod-app", "acme")["id"]
        assert api.get(f"workspaces/{prod_id}").status_code == 404
        assert api.get("organizations/other/workspaces").status_code == 404
        body = api.get("organizations/acme/workspaces/nothing-here").json()
    assert body == {"errors": [{"status": "404", "title": "not found"}]}


def test_users_teams_and_account_details(simulator):
    """`locked-by` targets resolve; /account/details is for user tokens only."""
    bob = simulator.workspace("legacy-network")["holder"]
    team = simulator.workspace("analytics-dev")["holder"]
    with simulator.client(USER_TOKEN) as api:
        assert api.get(f"users/{bob['id']}").json()["data"]["attributes"]["username"] == "bob"
        assert api.get(f"teams/{team['id']}").json()["data"]["attributes"]["name"] == ("developers")
        assert api.get(f"users/{team['id']}").status_code == 404
        me = api.get("account/details").json()["data"]
    assert me["type"] == "users"
    assert me["attributes"]["username"] == "operator"
    with simulator.client(ADMIN_TOKEN) as team_api, simulator.client(ORG_TOKEN) as org_api:
        assert team_api.get("account/details").status_code == 404
        assert org_api.get("account/details").status_code == 404


def test_duration_averages_are_milliseconds_as_the_scenario_sets_them_else_null(start_simulator):
    """Workspaces API docs: `plan-duration-average`/`apply-duration-average` in ms."""
    yaml_text = """
organizations:
  small:
    teams: [{name: owners, tokens: [t], access: admin}]
    workspaces:
      - {name: seasoned, plan_duration_average: 20s, apply_duration_average: 158s}
      - {name: fresh}
"""
    with start_simulator(scenario=yaml_text) as sim, sim.client("t") as api:
        seasoned = api.get("organizations/small/workspaces/seasoned").json()["data"]["attributes"]
        fresh = api.get("organizations/small/workspaces/fresh").json()["data"]["attributes"]
    assert (seasoned["plan-duration-average"], seasoned["apply-duration-average"]) == (
        20000,
        158000,
    )
    assert (fresh["plan-duration-average"], fresh["apply-duration-average"]) == (None, None)
