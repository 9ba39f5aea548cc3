package org.labinterp.hapi;

import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.entity.StorageSettings;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.JpaSystemProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.RequestValidatingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import ca.uhn.fhir.validation.IInstanceValidatorModule;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import jakarta.persistence.EntityManagerFactory;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import java.util.Properties;
import javax.sql.DataSource;
import org.springframework.beans.factory.annotation.Qualifier;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/** The beans HAPI's JPA configuration expects from its host, with test-friendly settings. */
@Configuration
public class ServerConfig {

	/**
	 * Storage settings. The population switches (LABINTERP_HAPI_* in application.properties) default to HAPI's
	 * own behaviour except the _include/_revinclude cap per page, raised so that a page of patients with their
	 * observations is complete.
	 */
	@Bean
	public JpaStorageSettings storageSettings(
			@Value("${labinterp.hapi.max-includes-per-page:20000}") int maxIncludesPerPage,
			@Value("${labinterp.hapi.mass-ingestion:false}") boolean massIngestion,
			@Value("${labinterp.hapi.match-url-cache:false}") boolean matchUrlCache,
			@Value("${labinterp.hapi.index-missing-fields:false}") boolean indexMissingFields,
			@Value("${labinterp.hapi.bulk-export:true}") boolean bulkExport) {
		JpaStorageSettings settings = new JpaStorageSettings();
		// HAPI loads at most 1000 _include/_revinclude targets per page (and says so in an OperationOutcome).
		settings.setMaximumIncludesToLoadPerPage(maxIncludesPerPage);
		// Mass ingestion: HAPI skips some per-resource work on writes (no tag, profile or security-label updates of existing resources; a hash check for changes).
		settings.setMassIngestionMode(massIngestion);
		// Remember which resource a conditional create's match URL found: a repeated If-None-Exist needs no search.
		settings.setMatchUrlCacheEnabled(matchUrlCache);
		settings.setIndexMissingFields(
				indexMissingFields ? StorageSettings.IndexEnabledEnum.ENABLED : StorageSettings.IndexEnabledEnum.DISABLED);
		if (bulkExport) {
			settings.setEnableTaskBulkExportJobExecution(true);
		}
		settings.setReuseCachedSearchResultsForMillis(null); // every search sees the latest data
		settings.setAllowMultipleDelete(true);
		settings.setExpungeEnabled(true);
		settings.setDeleteExpungeEnabled(true);
		settings.setSuppressUpdatesWithNoChange(true);
		settings.setAllowExternalReferences(false);
		settings.setAutoCreatePlaceholderReferenceTargets(false);
		return settings;
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		SubscriptionSettings settings = new SubscriptionSettings();
		settings.addSupportedSubscriptionType(org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType.RESTHOOK);
		return settings;
	}

	/** Only rest-hook subscriptions are used here: an email subscription is refused loudly, not dropped. */
	@Bean
	public IEmailSender emailSender() {
		return details -> {
			throw new UnsupportedOperationException("email subscriptions are not supported by labinterp's local HAPI");
		};
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	@Primary
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			DataSource dataSource,
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings settings,
			@Value("${labinterp.hapi.db-dialect:ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect}") String dialect,
			@Value("${labinterp.hapi.jdbc-batch-size:20}") int jdbcBatchSize) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, settings);
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setDataSource(dataSource);
		Properties jpa = new Properties();
		jpa.put("hibernate.dialect", dialect); // HapiFhirPostgresDialect for PostgreSQL
		jpa.put("hibernate.hbm2ddl.auto", "update");
		jpa.put("hibernate.search.enabled", "false");
		jpa.put("hibernate.format_sql", "false");
		jpa.put("hibernate.show_sql", "false");
		jpa.put("hibernate.jdbc.batch_size", String.valueOf(jdbcBatchSize));
		jpa.put("hibernate.physical_naming_strategy",
				"org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy");
		jpa.put("hibernate.implicit_naming_strategy",
				"org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy");
		emf.setJpaProperties(jpa);
		return emf;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		JpaTransactionManager tm = new JpaTransactionManager();
		tm.setEntityManagerFactory(entityManagerFactory);
		return tm;
	}

	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			JpaSystemProvider<?, ?> systemProvider,
			ValueSetOperationProvider valueSetOperations,
			DatabaseBackedPagingProvider pagingProvider,
			JpaStorageSettings settings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			@Qualifier("myInstanceValidator") IInstanceValidatorModule instanceValidator,
			@Value("${labinterp.hapi.validate-requests:true}") boolean validateRequests,
			@Value("${labinterp.hapi.terminology-checks:false}") boolean terminologyChecks,
			@Value("${labinterp.hapi.unknown-profiles-are-errors:false}") boolean unknownProfilesAreErrors,
			@Value("${labinterp.hapi.default-page-size:20}") int defaultPageSize,
			@Value("${labinterp.hapi.max-page-size:2000}") int maxPageSize,
			@Value("${labinterp.hapi.bulk-export:true}") boolean bulkExport,
			BulkDataExportProvider bulkDataExportProvider) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		server.registerProvider(valueSetOperations);
		if (bulkExport) { // FHIR Bulk Data: [base]/$export, Patient/$export, Group/[id]/$export (Prefer: respond-async)
			server.registerProvider(bulkDataExportProvider);
		}
		server.setServerConformanceProvider(
				new JpaCapabilityStatementProvider(server, systemDao, settings, searchParamRegistry, validationSupport));
		// HAPI's provider pages by 10 and caps _count at 50; population reads ask for up to ~2000 per page.
		pagingProvider.setDefaultPageSize(defaultPageSize);
		pagingProvider.setMaximumPageSize(maxPageSize);
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		if (instanceValidator instanceof FhirInstanceValidator fhirValidator) {
			// Offline there is no LOINC, SNOMED or HGVS terminology: required bindings to them cannot be checked
			// and would fail every genomic resource. Structure, cardinality, slices and profiles are still enforced.
			fhirValidator.setNoTerminologyChecks(!terminologyChecks);
			// Records from US EHRs claim profiles whose packages cannot be fetched offline (US Core, ...): a
			// meta.profile this server does not have is a warning, and the resource is still validated against
			// the base R4 definition (types, cardinality, required elements) and every profile it does have.
			// HAPI's ValidatorWrapper turns Validation_VAL_Profile_Unknown into an ERROR unless this is false.
			fhirValidator.setErrorForUnknownProfiles(unknownProfilesAreErrors);
			// Their extensions (us-core-race, us-core-ethnicity, ...) are unknown too: checked for structure only.
			fhirValidator.setAnyExtensionsAllowed(true);
		}
		if (validateRequests) {
			RequestValidatingInterceptor validating = new RequestValidatingInterceptor();
			validating.addValidatorModule(instanceValidator);
			validating.setFailOnSeverity(ResultSeverityEnum.ERROR);
			validating.setAddResponseHeaderOnSeverity(null);
			server.registerInterceptor(validating);
		}
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer server) {
		ServletRegistrationBean<RestfulServer> registration = new ServletRegistrationBean<>(server, "/fhir/*");
		registration.setName("fhir");
		registration.setLoadOnStartup(1);
		return registration;
	}
}
