//! Generic create/read/update/delete of the catalog's resources (`crate::catalog`). The SQL is
//! built from the column list of a [`Resource`]; table and column names come only from the
//! static catalog, values are always bound parameters. Every statement is scoped by
//! `tenant_id`, references are checked to point into the same tenant, and every change appends
//! an audit event in the same transaction.

use serde_json::{Map, Value as Json};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};
use tokio::sync::oneshot;

use super::events::{self, NewEvent};
use super::group_commit::{self, Preset};
use super::{now_ms, query_for, AnyQuery, Backend, Error, Result, Store};
use crate::catalog::{
    Column, Kind, Resource, ATTACHMENTS, INTERACTIONS, MAX_HIERARCHY_DEPTH, RESOURCES, USERS,
};

/// A value to store in one column; the `None`s are typed so PostgreSQL accepts them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

/// Filters and paging of a list request, already validated against the resource.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filters: Vec<(&'static Column, Value)>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    pub items: Vec<Json>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

pub(super) fn bind<'q>(query: AnyQuery<'q>, value: &Value) -> AnyQuery<'q> {
    match value {
        Value::Int(v) => query.bind(*v),
        Value::Text(v) => query.bind(v.clone()),
    }
}

pub(super) fn select_list(resource: &Resource) -> String {
    let mut cols = String::from("id");
    for c in resource.columns.iter().filter(|c| c.readable()) {
        cols.push_str(", ");
        cols.push_str(c.sql_name());
    }
    cols
}

pub(super) fn row_to_json(resource: &Resource, row: &AnyRow) -> Result<Json> {
    let mut object = Map::new();
    object.insert("id".into(), Json::from(row.try_get::<i64, _>("id")?));
    for c in resource.columns.iter().filter(|c| c.readable()) {
        let value = if c.is_int() {
            row.try_get::<Option<i64>, _>(c.sql_name())?.map(Json::from)
        } else {
            row.try_get::<Option<String>, _>(c.sql_name())?
                .map(Json::from)
        };
        object.insert(c.name.into(), value.unwrap_or(Json::Null));
    }
    Ok(Json::Object(object))
}

/// An interaction's create made ahead of its insert ([`Store::create_ahead`]).
pub struct Ahead {
    /// Its id, reserved for it.
    pub id: i64,
    /// The row as it will be written.
    pub row: Json,
    tenant: i64,
    answer: oneshot::Receiver<Result<Json>>,
    /// Where the row is held for its first offer.
    fresh: std::sync::Arc<super::offer_details::Fresh>,
}

impl Ahead {
    /// The row as written (as [`Store::create`] answers), once its round has committed. A row
    /// not written is no longer held for an offer; one written is held until the next.
    pub async fn written(self) -> Result<Json> {
        match self.answer.await.unwrap_or(Err(Error::Closed)) {
            Ok(_) => {
                self.fresh.written(self.tenant, self.id);
                Ok(self.row)
            }
            Err(e) => {
                self.fresh.forget(self.tenant, self.id);
                Err(e)
            }
        }
    }
}

impl Store {
    /// A page of `resource`'s rows in `tenant`; interactions are listed once those created
    /// ahead of their inserts so far are written ([`Store::all_settled`]).
    pub async fn list(&self, resource: &Resource, tenant: i64, query: &ListQuery) -> Result<Page> {
        if std::ptr::eq(resource, &INTERACTIONS) {
            self.all_settled(tenant).await;
        }
        let mut clause = String::from("tenant_id = $1");
        for (i, (c, _)) in query.filters.iter().enumerate() {
            clause.push_str(&format!(" AND {} = ${}", c.sql_name(), i + 2));
        }
        let n = query.filters.len();
        let count_sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE {clause}",
            resource.table
        );
        let list_sql = format!(
            "SELECT {} FROM {} WHERE {clause} ORDER BY id LIMIT ${} OFFSET ${}",
            select_list(resource),
            resource.table,
            n + 2,
            n + 3
        );
        let mut count = sqlx::query(&count_sql).bind(tenant);
        let mut list = sqlx::query(&list_sql).bind(tenant);
        for (_, v) in &query.filters {
            count = bind(count, v);
            list = bind(list, v);
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;
        let rows = list
            .bind(query.limit)
            .bind(query.offset)
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(|row| row_to_json(resource, row))
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            total,
            limit: query.limit,
            offset: query.offset,
        })
    }

    /// Row `id` of `resource` in `tenant`; an interaction created ahead is read once written
    /// ([`Store::settled`]).
    pub async fn get(&self, resource: &Resource, tenant: i64, id: i64) -> Result<Json> {
        self.settled_if_interaction(resource, tenant, id).await;
        self.read(resource, tenant, id).await
    }

    /// Row `id` of `resource` in `tenant` as stored now. The committer reads with this: waiting
    /// for the journal in [`Store::settled`] there would be waiting for itself (its own handle
    /// has no journal, so it would not today; this keeps it from depending on that).
    async fn read(&self, resource: &Resource, tenant: i64, id: i64) -> Result<Json> {
        let sql = format!(
            "SELECT {} FROM {} WHERE tenant_id = $1 AND id = $2",
            select_list(resource),
            resource.table
        );
        let row = sqlx::query(&sql)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound)?;
        row_to_json(resource, &row)
    }

    /// Inserts a row; `values` holds every column to write (defaults already applied). The
    /// insert is group-committed with the creates of other requests (see `group_commit`); it
    /// has committed, with its audit event, when this returns.
    pub async fn create(
        &self,
        resource: &Resource,
        tenant: i64,
        actor: Option<i64>,
        values: &[(&'static Column, Value)],
    ) -> Result<Json> {
        for (column, value) in values {
            if let (Kind::Ref("interactions"), Value::Int(Some(target))) = (column.kind, value) {
                self.settled(tenant, *target).await;
            }
        }
        // The committer outlives the request, so it takes the catalog's own description.
        let listed = RESOURCES
            .iter()
            .copied()
            .find(|r| std::ptr::eq(*r, resource));
        // A row put under another of its table (a mailbox in a mailbox) has its chain walked
        // by `check_references`, which the committer's round does not do: such creates are
        // rare and made alone.
        let in_hierarchy = values.iter().any(|(column, value)| {
            matches!(column.kind, Kind::Ref(table) if table == resource.table)
                && matches!(value, Value::Int(Some(_)))
        });
        let created = match (&self.creates, listed) {
            (Some(committer), Some(resource)) if !in_hierarchy => {
                group_commit::submit(committer, resource, tenant, actor, values.to_vec()).await?
            }
            _ => {
                self.create_alone(resource, tenant, actor, values, None)
                    .await?
            }
        };
        if std::ptr::eq(resource, &INTERACTIONS) {
            self.fresh.hold(tenant, &created, false);
        }
        if std::ptr::eq(resource, &USERS) {
            // No session to forget, but the supervisors' feeds learn the new name.
            if let Some(id) = created["id"].as_i64() {
                self.user_changed(tenant, id);
            }
        }
        Ok(created)
    }

    /// Hands the insert of an interaction to the journal with an id reserved for it and does
    /// not wait for it to be written, so that it can be routed at once: the journal writes it
    /// before any routing output sent after this returns. The row as it will be written is held
    /// for its first offer. `None` when no id is reserved (the next ones are being reserved)
    /// or the committer is gone: the caller creates it with [`Store::create`].
    pub fn create_ahead(
        &self,
        tenant: i64,
        actor: Option<i64>,
        values: &[(&'static Column, Value)],
    ) -> Option<Ahead> {
        let journal = self.journal.as_ref()?;
        self.reserve_ids_if_low();
        let at = now_ms();
        let (reply, answer) = oneshot::channel();
        let (id, sent) = self.ids.take(|id| {
            let preset = Preset { id, at };
            let create =
                group_commit::Create::ahead(&INTERACTIONS, tenant, actor, values, preset, reply);
            (
                id,
                journal.send(group_commit::Journal::Create(create)).is_ok(),
            )
        })?;
        if !sent {
            return None;
        }
        let mut row = Map::new();
        row.insert("id".into(), Json::from(id));
        for c in INTERACTIONS.columns.iter().filter(|c| c.readable()) {
            let value = match values.iter().find(|(v, _)| v.name == c.name) {
                Some((_, Value::Int(Some(n)))) => Json::from(*n),
                Some((_, Value::Text(Some(s)))) => Json::from(s.as_str()),
                _ if matches!(c.kind, Kind::CreatedAt) => Json::from(at),
                _ => Json::Null,
            };
            row.insert(c.name.into(), value);
        }
        let row = Json::Object(row);
        self.fresh.hold(tenant, &row, true);
        Some(Ahead {
            id,
            row,
            tenant,
            answer,
            fresh: self.fresh.clone(),
        })
    }

    /// Whether every row the references among `values` (columns that reference a table, with
    /// the ids they name) point to exists in `tenant` now — read, not locked: a create made
    /// ahead checks them before routing, and its insert checks them again.
    pub async fn references_exist<'v>(
        &self,
        tenant: i64,
        values: impl IntoIterator<Item = &'v (&'static Column, Value)>,
    ) -> Result<bool> {
        for (column, value) in values {
            let (Kind::Ref(table), Value::Int(Some(target))) = (column.kind, value) else {
                continue;
            };
            if !in_tenant(&self.pool, table, *target, tenant).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Store::settled`] for row `id` of `resource` if it is an interaction.
    async fn settled_if_interaction(&self, resource: &Resource, tenant: i64, id: i64) {
        if std::ptr::eq(resource, &INTERACTIONS) {
            self.settled(tenant, id).await;
        }
    }

    /// Inserts one row in a transaction of its own. A create made ahead (`preset`: its id and
    /// creation time) is written at most once: if its row is there already — a round holding it
    /// committed though its `COMMIT` went unanswered — that row is the answer.
    pub(super) async fn create_alone(
        &self,
        resource: &Resource,
        tenant: i64,
        actor: Option<i64>,
        values: &[(&'static Column, Value)],
        preset: Option<Preset>,
    ) -> Result<Json> {
        let mut tx = self.begin().await?;
        check_references(&mut tx, resource, tenant, None, values).await?;
        let (names, row) = insert_values(resource, values, now_ms(), preset);
        let rows = insert_rows(&mut tx, "", self.backend, resource, tenant, &names, &[row])
            .await
            .map_err(|e| Error::classify(e, resource.schema))?;
        let Some(row) = rows.first() else {
            drop(tx);
            return match preset {
                Some(preset) => self.read(resource, tenant, preset.id).await,
                None => Err(Error::NotFound),
            };
        };
        let id: i64 = row.try_get("id")?;
        let created = row_to_json(resource, row)?;
        events::append_in(
            &mut tx,
            &audit(resource.table, "created", tenant, actor, id),
        )
        .await?;
        tx.commit().await.map_err(super::commit_failed)?;
        Ok(created)
    }

    pub async fn update(
        &self,
        resource: &Resource,
        tenant: i64,
        actor: Option<i64>,
        id: i64,
        values: &[(&'static Column, Value)],
    ) -> Result<Json> {
        if values.is_empty() {
            return self.get(resource, tenant, id).await;
        }
        self.settled_if_interaction(resource, tenant, id).await;
        let mut tx = self.begin().await?;
        let demoting =
            std::ptr::eq(resource, &USERS) && values.iter().any(|(c, _)| c.name == "role");
        let admins_before = if demoting {
            admins_in_turn(&mut tx, self.backend, tenant).await?
        } else {
            0
        };
        check_references(&mut tx, resource, tenant, Some(id), values).await?;
        let sets = values
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{} = ${}", c.sql_name(), i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE {} SET {sets} WHERE tenant_id = $1 AND id = $2 RETURNING {}",
            resource.table,
            select_list(resource)
        );
        let mut update = sqlx::query(&sql).bind(tenant).bind(id);
        for (_, v) in values {
            update = bind(update, v);
        }
        let row = update
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| Error::classify(e, resource.schema))?
            .ok_or(Error::NotFound)?;
        let updated = row_to_json(resource, &row)?;
        if demoting {
            an_admin_left(&mut tx, tenant, admins_before).await?;
        }
        // A new password ends every login made with the old one: a reset locks out whoever
        // knew it, on REST and on the open sockets (which check their session again).
        if values.iter().any(|(c, _)| matches!(c.kind, Kind::Password)) {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        events::append_in(
            &mut tx,
            &audit(resource.table, "updated", tenant, actor, id),
        )
        .await?;
        tx.commit().await?;
        if std::ptr::eq(resource, &USERS) {
            self.user_changed(tenant, id);
        }
        if std::ptr::eq(resource, &INTERACTIONS) {
            self.fresh.forget(tenant, id);
        }
        Ok(updated)
    }

    pub async fn delete(
        &self,
        resource: &Resource,
        tenant: i64,
        actor: Option<i64>,
        id: i64,
    ) -> Result<()> {
        self.settled_if_interaction(resource, tenant, id).await;
        let mut tx = self.begin().await?;
        let user = std::ptr::eq(resource, &USERS);
        let admins_before = if user {
            admins_in_turn(&mut tx, self.backend, tenant).await?
        } else {
            0
        };
        let sql = format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND id = $2",
            resource.table
        );
        let done = sqlx::query(&sql)
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::classify(e, resource.schema))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        if user {
            an_admin_left(&mut tx, tenant, admins_before).await?;
        }
        events::append_in(
            &mut tx,
            &audit(resource.table, "deleted", tenant, actor, id),
        )
        .await?;
        tx.commit().await?;
        if std::ptr::eq(resource, &USERS) {
            self.user_changed(tenant, id);
        }
        if std::ptr::eq(resource, &INTERACTIONS) {
            self.fresh.forget(tenant, id);
        }
        Ok(())
    }
}

/// Before a change that may take a tenant's last admin away: how many admins it has now. On
/// PostgreSQL, where write transactions run side by side, such changes of one tenant wait for
/// each other (each locks the tenant's row), so two admins demoting each other at once cannot
/// both see the other still admin. SQLite has one writer: they are in turn already.
async fn admins_in_turn(
    tx: &mut sqlx::Transaction<'static, Any>,
    backend: Backend,
    tenant: i64,
) -> Result<i64> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?;
    }
    admins(tx, tenant).await
}

/// After such a change: refused if it took away the tenant's last admin, the one role that can
/// manage its users (the operator token manages tenants, not their users).
async fn an_admin_left(
    tx: &mut sqlx::Transaction<'static, Any>,
    tenant: i64,
    before: i64,
) -> Result<()> {
    if before > 0 && admins(tx, tenant).await? == 0 {
        return Err(Error::LastAdmin);
    }
    Ok(())
}

async fn admins(tx: &mut sqlx::Transaction<'static, Any>, tenant: i64) -> Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS admins FROM users WHERE tenant_id = $1 AND role = 'admin'")
            .bind(tenant)
            .fetch_one(&mut **tx)
            .await?
            .try_get("admins")?,
    )
}

/// The audit event of an admin change (`verb`) of the row `id` of `table`, by `actor` (`None`:
/// the operator or the system).
pub(super) fn audit(table: &str, verb: &str, tenant: i64, actor: Option<i64>, id: i64) -> NewEvent {
    NewEvent {
        tenant,
        kind: format!("admin.{table}.{verb}"),
        interaction_id: None,
        agent_id: actor,
        queue_id: None,
        payload: serde_json::json!({ "table": table, "id": id }).to_string(),
    }
}

/// The columns an insert writes (besides `tenant_id`) and their values: `values` plus the
/// creation time (`now`, or that of a create made ahead) and the id of a create made ahead.
pub(super) fn insert_values(
    resource: &Resource,
    values: &[(&'static Column, Value)],
    now: i64,
    preset: Option<Preset>,
) -> (Vec<&'static str>, Vec<Value>) {
    let mut names: Vec<&'static str> = values.iter().map(|(c, _)| c.sql_name()).collect();
    let mut row: Vec<Value> = values.iter().map(|(_, v)| v.clone()).collect();
    for c in resource
        .columns
        .iter()
        .filter(|c| matches!(c.kind, Kind::CreatedAt))
    {
        names.push(c.sql_name());
        row.push(Value::Int(Some(preset.map_or(now, |p| p.at))));
    }
    if let Some(preset) = preset {
        names.push("id");
        row.push(Value::Int(Some(preset.id)));
    }
    (names, row)
}

/// Inserts `rows` (each with the values of `names`, in order) with one statement, sent after
/// `lead` (SQL of statements without parameters, or nothing) in one query, and returns what was
/// inserted, as readable columns plus `id`, in no particular order. Rows that bring their id
/// (creates made ahead) are written at most once: one whose id is taken is neither inserted
/// nor returned.
pub(super) async fn insert_rows(
    connection: &mut AnyConnection,
    lead: &str,
    backend: Backend,
    resource: &Resource,
    tenant: i64,
    names: &[&str],
    rows: &[Vec<Value>],
) -> std::result::Result<Vec<AnyRow>, sqlx::Error> {
    let sql = format!(
        "{} RETURNING {}",
        insert_sql(lead, backend, resource, names, rows.len()),
        select_list(resource)
    );
    bound_insert(&sql, tenant, names, rows.iter().map(Vec::as_slice))
        .fetch_all(connection)
        .await
}

/// [`insert_rows`] for rows that bring their id (creates made ahead), returning nothing: how
/// many were inserted (those whose id is taken are not).
pub(super) async fn insert_rows_made_ahead<'r>(
    connection: &mut AnyConnection,
    backend: Backend,
    resource: &Resource,
    tenant: i64,
    names: &[&str],
    rows: impl ExactSizeIterator<Item = &'r [Value]>,
) -> std::result::Result<u64, sqlx::Error> {
    let sql = insert_sql("", backend, resource, names, rows.len());
    let done = bound_insert(&sql, tenant, names, rows)
        .execute(connection)
        .await?;
    Ok(done.rows_affected())
}

/// The insert of `rows` rows of `names` and `tenant_id` after `lead`; rows that bring their id
/// skip a taken one.
fn insert_sql(
    lead: &str,
    backend: Backend,
    resource: &Resource,
    names: &[&str],
    rows: usize,
) -> String {
    let tuples = backend.values(rows, names.len() + 1);
    let columns = std::iter::once("tenant_id")
        .chain(names.iter().copied())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{lead}INSERT INTO {} ({columns}) VALUES {tuples}{}",
        resource.table,
        if names.contains(&"id") {
            " ON CONFLICT (id) DO NOTHING"
        } else {
            ""
        },
    )
}

/// The query of `sql` (an [`insert_sql`] of `names`) with `tenant` and the values of each row
/// bound, in its order.
fn bound_insert<'q, 'r>(
    sql: &'q str,
    tenant: i64,
    names: &[&str],
    rows: impl ExactSizeIterator<Item = &'r [Value]>,
) -> AnyQuery<'q> {
    let mut insert = query_for(sql, rows.len() * (1 + names.len()));
    for row in rows {
        insert = insert.bind(tenant);
        for value in row {
            insert = bind(insert, value);
        }
    }
    insert
}

/// Whether row `target` of `table` belongs to `tenant`.
async fn in_tenant<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    table: &str,
    target: i64,
    tenant: i64,
) -> Result<bool> {
    let sql = format!("SELECT id FROM {table} WHERE id = $1 AND tenant_id = $2");
    let found = sqlx::query(&sql)
        .bind(target)
        .bind(tenant)
        .fetch_optional(executor)
        .await?;
    Ok(found.is_some())
}

/// Every referenced id must exist in the same tenant; a column referencing its own table
/// (a hierarchy such as mailbox → parent) must not close a cycle through `id`, nor make the
/// chain deeper than [`MAX_HIERARCHY_DEPTH`].
async fn check_references(
    tx: &mut sqlx::Transaction<'_, Any>,
    resource: &Resource,
    tenant: i64,
    id: Option<i64>,
    values: &[(&'static Column, Value)],
) -> Result<()> {
    for (column, value) in values {
        let (Kind::Ref(table), Value::Int(Some(target))) = (column.kind, value) else {
            continue;
        };
        if !in_tenant(&mut **tx, table, *target, tenant).await? {
            return Err(Error::UnknownReference {
                field: column.name,
                table,
            });
        }
        if table == resource.table {
            // Walk up from the new parent: the row must not be found there (a cycle), nor the
            // chain be too long for it. Stored rows should form no cycle, but two changes
            // committed side by side on PostgreSQL can each pass this check before the other
            // commits: the walk ends at the depth limit instead of never.
            let sql = format!(
                "SELECT {} AS up FROM {table} WHERE id = $1 AND tenant_id = $2",
                column.sql_name()
            );
            let mut at = Some(*target);
            let mut steps = 0;
            while let Some(current) = at {
                steps += 1;
                if Some(current) == id {
                    return Err(Error::Cycle(column.name));
                }
                if steps >= MAX_HIERARCHY_DEPTH {
                    return Err(Error::TooDeep(column.name));
                }
                let row = sqlx::query(&sql)
                    .bind(current)
                    .bind(tenant)
                    .fetch_one(&mut **tx)
                    .await?;
                at = row.try_get::<Option<i64>, _>("up")?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// Stores the bytes of an attachment (replacing earlier ones) and records their size.
    pub async fn put_attachment_content(
        &self,
        tenant: i64,
        actor: Option<i64>,
        id: i64,
        bytes: &[u8],
        may_replace: bool,
    ) -> Result<Json> {
        let mut tx = self.begin().await?;
        let done =
            sqlx::query("UPDATE attachments SET size_bytes = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(bytes.len() as i64)
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        let replaced = sqlx::query("DELETE FROM attachment_blobs WHERE attachment_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if replaced.rows_affected() > 0 && !may_replace {
            return Err(Error::ContentStored(id));
        }
        sqlx::query("INSERT INTO attachment_blobs (attachment_id, data) VALUES ($1, $2)")
            .bind(id)
            .bind(bytes.to_vec())
            .execute(&mut *tx)
            .await?;
        events::append_in(
            &mut tx,
            &audit(ATTACHMENTS.table, "content_stored", tenant, actor, id),
        )
        .await?;
        tx.commit().await?;
        self.get(&ATTACHMENTS, tenant, id).await
    }

    pub async fn attachment_content(&self, tenant: i64, id: i64) -> Result<Vec<u8>> {
        let row = sqlx::query(
            "SELECT b.data FROM attachment_blobs b JOIN attachments a ON a.id = b.attachment_id \
             WHERE a.tenant_id = $1 AND a.id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::NotFound)?;
        Ok(row.try_get("data")?)
    }
}
