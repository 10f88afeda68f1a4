//! The OpenAPI document served at `/api/v1/openapi.json`, generated from the code: the fixed
//! routes (login, tenants, health) from their `#[utoipa::path]` annotations, and every catalog
//! resource from the same column descriptions that validate its requests — so the document
//! cannot describe a field differently from how the server treats it.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{auth, calls, chat, health, interactions, reports, resources, supervisor, tenants};
use crate::catalog::{Column, Kind, Resource, BLENDINGS, MISSED_OFFERS, RESOURCES};

#[derive(OpenApi)]
#[openapi(
    info(title = "vacd admin API", description = "Tenants, mailboxes, queues, skills, users and everything else vacd routes with. Every error is `{\"error\": {\"code\", \"message\"}}`."),
    paths(auth::login, auth::logout, auth::me, auth::colleagues, chat::widget_info, chat::offline, tenants::list, tenants::create, tenants::read, tenants::update, tenants::remove, health::health, health::ready, health::metrics, calls::start, calls::stop, interactions::move_interaction, interactions::customer, reports::report, supervisor::set_status, resources::effective_mailbox, resources::attachment_content, resources::put_attachment_content),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct Fixed;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Builds the whole document; called once at start.
pub fn document() -> Document {
    let mut doc = Fixed::openapi();
    tenant_settings(&mut doc);
    doc.merge(super::tickets::TicketPaths::openapi());
    for resource in RESOURCES {
        add_resource(&mut doc, resource);
    }
    doc
}

/// The tenant's routing settings list the names the server accepts, from the same lists that
/// validate them (`api::tenants`).
fn tenant_settings(doc: &mut Document) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in ["Tenant", "TenantUpdate"] {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            continue;
        };
        for (field, names) in [("blending", BLENDINGS), ("missed_offer", MISSED_OFFERS)] {
            let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(field) else {
                continue;
            };
            let mut values: Vec<serde_json::Value> = names
                .iter()
                .map(|name| serde_json::Value::from(*name))
                .collect();
            if matches!(&property.schema_type, SchemaType::Array(types) if types.contains(&Type::Null))
            {
                values.push(serde_json::Value::Null);
            }
            property.enum_values = Some(values);
        }
    }
}

fn column_schema(c: &Column) -> Schema {
    let (ty, builder) = match c.kind {
        Kind::Int { min, max } => (
            Type::Integer,
            ObjectBuilder::new()
                .minimum(Some(min as f64))
                .maximum(Some(max as f64)),
        ),
        Kind::Ref(table) => (
            Type::Integer,
            ObjectBuilder::new().description(Some(format!("id of one of the tenant's {table}"))),
        ),
        Kind::Derived => (
            Type::Integer,
            ObjectBuilder::new()
                .read_only(Some(true))
                .description(Some("maintained by routing")),
        ),
        Kind::CreatedAt => (
            Type::Integer,
            ObjectBuilder::new()
                .read_only(Some(true))
                .description(Some("Unix milliseconds")),
        ),
        Kind::Text { max_len } => (Type::String, ObjectBuilder::new().max_length(Some(max_len))),
        Kind::OneOf(values) => (
            Type::String,
            ObjectBuilder::new().enum_values(Some(values.iter().copied())),
        ),
        Kind::Language => (
            Type::String,
            ObjectBuilder::new()
                .min_length(Some(2))
                .max_length(Some(2))
                .description(Some("ISO 639-1 code")),
        ),
        Kind::Hours => (
            Type::String,
            ObjectBuilder::new()
                .max_length(Some(200))
                .description(Some("Opening hours on the clock of the tenant's `time_zone`, e.g. `Mo-Fr 08:00-18:00`")),
        ),
        Kind::SoundFile => (
            Type::String,
            ObjectBuilder::new()
                .max_length(Some(100))
                .description(Some("A WAV file name in the sounds directory (`sip.sounds`)")),
        ),
        Kind::Password => (
            Type::String,
            ObjectBuilder::new()
                .min_length(Some(8))
                .max_length(Some(256))
                .write_only(Some(true)),
        ),
        Kind::Secret { max_len } => (
            Type::String,
            ObjectBuilder::new()
                .max_length(Some(max_len))
                .write_only(Some(true)),
        ),
        Kind::SipUser => (
            Type::String,
            ObjectBuilder::new()
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some("^[A-Za-z0-9._-]+$"))
                .description(Some("SIP username, unique across tenants")),
        ),
        Kind::SipPassword => (
            Type::String,
            ObjectBuilder::new()
                .min_length(Some(8))
                .max_length(Some(256))
                .write_only(Some(true))
                .description(Some(
                    "SIP digest password; send together with `sip_username`, stored only as digest hashes",
                )),
        ),
    };
    let nullable = !c.required && c.default.is_none();
    let schema_type = if nullable {
        SchemaType::Array(vec![ty, Type::Null])
    } else {
        SchemaType::Type(ty)
    };
    Schema::Object(builder.schema_type(schema_type).build())
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn json_content(schema: RefOr<Schema>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn add_resource(doc: &mut Document, r: &Resource) {
    let mut row = ObjectBuilder::new()
        .property(
            "id",
            Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .read_only(Some(true))
                    .build(),
            ),
        )
        .required("id");
    let mut create = ObjectBuilder::new();
    let mut update = ObjectBuilder::new();
    for c in r.columns {
        if c.readable() {
            row = row.property(c.name, column_schema(c)).required(c.name);
        }
        if c.writable() {
            create = create.property(c.name, column_schema(c));
            if c.required {
                create = create.required(c.name);
            }
            if c.mutable {
                update = update.property(c.name, column_schema(c));
            }
        }
    }
    let page = ObjectBuilder::new()
        .property("items", ArrayBuilder::new().items(reference(r.schema)))
        .property(
            "total",
            Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).build()),
        )
        .property(
            "limit",
            Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).build()),
        )
        .property(
            "offset",
            Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).build()),
        );
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(r.schema.into(), Schema::Object(row.build()).into());
    components.schemas.insert(
        format!("{}Page", r.schema),
        Schema::Object(page.build()).into(),
    );
    if r.write.is_some() {
        components.schemas.insert(
            format!("{}Create", r.schema),
            Schema::Object(create.build()).into(),
        );
        components.schemas.insert(
            format!("{}Update", r.schema),
            Schema::Object(update.build()).into(),
        );
    }

    let error = |status: &str| {
        ResponseBuilder::new()
            .description(status)
            .content("application/json", json_content(reference("ErrorBody")))
            .build()
    };
    let ok = |name: String| {
        ResponseBuilder::new()
            .description("OK")
            .content("application/json", json_content(reference(&name)))
            .build()
    };
    let body = |name: String| {
        Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json_content(reference(&name)))
                .build(),
        )
    };
    let int_param = |name: &str, at: ParameterIn, description: &str| {
        let required = if matches!(at, ParameterIn::Path) {
            Required::True
        } else {
            Required::False
        };
        ParameterBuilder::new()
            .name(name)
            .parameter_in(at)
            .required(required)
            .description(Some(description))
            .schema(Some(Schema::Object(
                ObjectBuilder::new().schema_type(Type::Integer).build(),
            )))
            .build()
    };
    let operation = |id: String| {
        OperationBuilder::new()
            .operation_id(Some(id))
            .tag(r.path)
            .securities(Some([SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]))
            .response("401", error("missing or invalid token"))
            .response("403", error("the caller's role may not do this"))
    };

    let collection = format!("/api/v1/{}", r.path);
    let item = format!("/api/v1/{}/{{id}}", r.path);
    let mut list = operation(format!("list_{}", r.table))
        .parameter(int_param(
            "limit",
            ParameterIn::Query,
            "page size, 1–500 (default 50)",
        ))
        .parameter(int_param(
            "offset",
            ParameterIn::Query,
            "rows to skip (default 0)",
        ))
        .response("200", ok(format!("{}Page", r.schema)))
        .response("400", error("bad query parameter"));
    for c in r.columns.iter().filter(|c| c.filter) {
        list = list.parameter(
            ParameterBuilder::new()
                .name(c.name)
                .parameter_in(ParameterIn::Query)
                .description(Some("only rows with this value"))
                .schema(Some(column_schema(c)))
                .build(),
        );
    }
    let paths = &mut doc.paths;
    paths.add_path_operation(&collection, vec![HttpMethod::Get], list);
    paths.add_path_operation(
        &item,
        vec![HttpMethod::Get],
        operation(format!("get_{}", r.table))
            .parameter(int_param("id", ParameterIn::Path, "row id"))
            .response("200", ok(r.schema.into()))
            .response("404", error("no such row in the caller's tenant")),
    );
    if r.write.is_some() {
        paths.add_path_operation(
            &collection,
            vec![HttpMethod::Post],
            operation(format!("create_{}", r.table))
                .request_body(body(format!("{}Create", r.schema)))
                .response("201", ok(r.schema.into()))
                .response("400", error("malformed JSON"))
                .response("409", error("duplicate"))
                .response("422", error("invalid field")),
        );
        paths.add_path_operation(
            &item,
            vec![HttpMethod::Patch],
            operation(format!("update_{}", r.table))
                .parameter(int_param("id", ParameterIn::Path, "row id"))
                .request_body(body(format!("{}Update", r.schema)))
                .response("200", ok(r.schema.into()))
                .response("404", error("no such row in the caller's tenant"))
                .response("409", error("duplicate"))
                .response("422", error("invalid field")),
        );
    }
    if r.delete.is_some() {
        paths.add_path_operation(
            &item,
            vec![HttpMethod::Delete],
            operation(format!("delete_{}", r.table))
                .parameter(int_param("id", ParameterIn::Path, "row id"))
                .response("204", ResponseBuilder::new().description("deleted").build())
                .response("404", error("no such row in the caller's tenant"))
                .response("409", error("still referenced")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths the API's route tables register (`.route("/api/v1/…"` in its sources), with
    /// the catalog's own routes, which `add_resource` describes, left out.
    fn routed_paths() -> Vec<String> {
        let sources = [
            include_str!("mod.rs"),
            include_str!("resources.rs"),
            include_str!("tickets.rs"),
            include_str!("tenants.rs"),
            include_str!("chat.rs"),
        ];
        let mut paths = Vec::new();
        for source in sources {
            for after in source.split(".route(").skip(1) {
                let literal = after.trim_start();
                let Some(rest) = literal.strip_prefix('"') else {
                    continue;
                };
                let path = rest.split('"').next().unwrap_or_default();
                if path.starts_with("/api/v1/") {
                    paths.push(path.to_owned());
                }
            }
        }
        paths
    }

    #[test]
    fn every_api_route_is_described() {
        let doc = document();
        let routed = routed_paths();
        assert!(routed.len() > 20, "the route tables were found: {routed:?}");
        let missing: Vec<&String> = routed
            .iter()
            .filter(|p| p.as_str() != "/api/v1/openapi.json" && !doc.paths.paths.contains_key(*p))
            .collect();
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
    }
}
