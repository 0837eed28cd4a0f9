package dev.ravit.core;

/**
 * A manifest that is malformed or does not match its submodels (the Java twin of
 * {@code ravit_keras.deploy.runtime.manifest.ManifestError}). The message names the file and the problem.
 */
public class ManifestException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ManifestException(String message) {
        super(message);
    }

    public ManifestException(String message, Throwable cause) {
        super(message, cause);
    }
}
