/*
 * A PAM application on OpenPAM's libpam, for tests/system/openpam.sh.
 *
 *   harness [-sx] [-a AUTHTOK] SERVICE USER STEP... [-- MODULE ARG...]
 *
 * pam_start(SERVICE, USER) with a conversation that prints every message
 * ("prompt: TEXT", "error: TEXT", "info: TEXT") and answers each prompt
 * with the next line of standard input (none left: PAM_CONV_ERR). Then
 * each STEP (auth, setcred, acct, open, close, chauthtok, env), printing
 * "STEP=CODE" with OpenPAM's number, and pam_end. env prints the PAM
 * environment ("env: NAME=VALUE"), and whether the file AUTHTOKEN_FILE
 * names exists ("token-file: present" or "absent").
 *
 *   -s          PAM_SILENT on every call (OpenPAM's 0x80000000)
 *   -x          exit without pam_end, as sshd's authentication child does
 *   -a AUTHTOK  PAM_AUTHTOK set before the steps, as an earlier module or
 *               the application would
 *   -- MODULE   call MODULE's pam_sm_* with ARG... directly, on the handle
 *               from pam_start, instead of through the SERVICE's chains:
 *               the number the module itself hands to OpenPAM, which a
 *               chain would fold into its own result (PAM_IGNORE above all)
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <security/pam_appl.h>
#include <security/pam_modules.h>

typedef int (*sm_func)(pam_handle_t *, int, int, const char **);

static int
converse(int n, const struct pam_message **msg, struct pam_response **resp,
    void *data)
{
	struct pam_response *answers;
	char line[1024];
	int i;

	(void)data;
	if (n <= 0 || n > PAM_MAX_NUM_MSG)
		return (PAM_CONV_ERR);
	if ((answers = calloc((size_t)n, sizeof *answers)) == NULL)
		return (PAM_BUF_ERR);
	for (i = 0; i < n; ++i) {
		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
		case PAM_PROMPT_ECHO_ON:
			printf("prompt: %s\n", msg[i]->msg);
			fflush(stdout);
			if (fgets(line, sizeof line, stdin) == NULL)
				goto fail;
			line[strcspn(line, "\n")] = '\0';
			if ((answers[i].resp = strdup(line)) == NULL)
				goto fail;
			memset(line, 0, sizeof line);
			break;
		case PAM_ERROR_MSG:
			printf("error: %s\n", msg[i]->msg);
			break;
		case PAM_TEXT_INFO:
			printf("info: %s\n", msg[i]->msg);
			break;
		default:
			goto fail;
		}
	}
	*resp = answers;
	return (PAM_SUCCESS);
fail:
	for (i = 0; i < n; ++i)
		free(answers[i].resp);
	free(answers);
	return (PAM_CONV_ERR);
}

int
main(int argc, char *argv[])
{
	static const char *names[] = { "auth", "setcred", "acct", "open",
	    "close", "chauthtok", "env" };
	static const char *symbols[] = { "pam_sm_authenticate",
	    "pam_sm_setcred", "pam_sm_acct_mgmt", "pam_sm_open_session",
	    "pam_sm_close_session", "pam_sm_chauthtok", NULL };
	struct pam_conv conv = { converse, NULL };
	pam_handle_t *pamh;
	const char *authtok = NULL;
	const char **module_args = NULL;
	void *module = NULL;
	int flags = 0, module_argc = 0, no_end = 0, opt, i, rc, steps, step;
	char **env;

	while ((opt = getopt(argc, argv, "+sxa:")) != -1) {
		switch (opt) {
		case 's':
			flags |= PAM_SILENT;
			break;
		case 'x':
			no_end = 1;
			break;
		case 'a':
			authtok = optarg;
			break;
		default:
			return (2);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 3) {
		fprintf(stderr, "usage: harness [-sx] [-a AUTHTOK] SERVICE USER "
		    "STEP... [-- MODULE ARG...]\n");
		return (2);
	}
	for (steps = 2; steps < argc && strcmp(argv[steps], "--") != 0; ++steps)
		;
	if (steps < argc) {
		if (steps + 1 >= argc) {
			fprintf(stderr, "harness: -- needs a MODULE\n");
			return (2);
		}
		if ((module = dlopen(argv[steps + 1], RTLD_NOW)) == NULL) {
			fprintf(stderr, "harness: %s\n", dlerror());
			return (2);
		}
		module_args = (const char **)&argv[steps + 2];
		module_argc = argc - steps - 2;
	}
	if ((rc = pam_start(argv[0], argv[1], &conv, &pamh)) != PAM_SUCCESS) {
		printf("start=%d\n", rc);
		return (1);
	}
	if (authtok != NULL &&
	    (rc = pam_set_item(pamh, PAM_AUTHTOK, authtok)) != PAM_SUCCESS) {
		printf("authtok=%d\n", rc);
		return (1);
	}
	for (i = 2; i < steps; ++i) {
		for (step = 0; step < 7; ++step)
			if (strcmp(argv[i], names[step]) == 0)
				break;
		if (step == 7) {
			fprintf(stderr, "harness: unknown step %s\n", argv[i]);
			return (2);
		}
		if (step == 6) {
			if ((env = pam_getenvlist(pamh)) != NULL) {
				for (char **e = env; *e != NULL; ++e) {
					printf("env: %s\n", *e);
					if (strncmp(*e, "AUTHTOKEN_FILE=", 15) == 0)
						printf("token-file: %s\n",
						    access(*e + 15, F_OK) == 0 ?
						    "present" : "absent");
					free(*e);
				}
				free(env);
			}
			continue;
		}
		if (module != NULL) {
			sm_func f = (sm_func)dlsym(module, symbols[step]);
			if (f == NULL) {
				fprintf(stderr, "harness: no %s\n", symbols[step]);
				return (2);
			}
			rc = f(pamh, flags | (step == 1 ? PAM_ESTABLISH_CRED :
			    step == 5 ? PAM_UPDATE_AUTHTOK : 0),
			    module_argc, module_args);
		} else {
			switch (step) {
			case 0: rc = pam_authenticate(pamh, flags); break;
			case 1: rc = pam_setcred(pamh, flags | PAM_ESTABLISH_CRED); break;
			case 2: rc = pam_acct_mgmt(pamh, flags); break;
			case 3: rc = pam_open_session(pamh, flags); break;
			case 4: rc = pam_close_session(pamh, flags); break;
			default: rc = pam_chauthtok(pamh, flags | PAM_UPDATE_AUTHTOK); break;
			}
		}
		printf("%s=%d\n", names[step], rc);
		fflush(stdout);
	}
	if (no_end)
		_exit(0);
	rc = pam_end(pamh, rc);
	return (rc == PAM_SUCCESS ? 0 : 1);
}
